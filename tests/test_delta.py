"""The SLAM delta: round trip, wrong base refused, merged model == base with the delta's tensors, exactly."""

import json

import pytest
import torch

from slam import delta
from slam.errors import SlamError
from slam.freeze import make_plan
from slam.models import load_model
from slam.testing import save_tiny


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("base") / "m", "llama", num_layers=4)


@pytest.fixture(scope="module")
def trained_delta(base, tmp_path_factory):
    """A delta whose tensors differ from the base (as after training)."""
    model = load_model(base, device="cpu")
    plan = make_plan(model, [1, 2], ["up", "down"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in plan.names:
                p.add_(torch.randn_like(p))
    uri = str(tmp_path_factory.mktemp("d") / "delta")
    delta.save_delta(model, plan, uri, {"base_path": str(base), "data_fingerprint": "abc"})
    return uri, plan, {n: p.detach().clone() for n, p in model.named_parameters()}


def test_manifest_names_the_base_layers_and_tensors(trained_delta, base):
    uri, plan, _ = trained_delta
    m = json.loads((delta.Path(uri) / "manifest.json").read_text())
    assert m["format"] == delta.FORMAT
    assert m["layers"] == [1, 2] and m["roles"] == ["up", "down"]
    assert m["tensors"] == sorted(plan.names) and m["trainable"] == plan.trainable
    assert m["base"]["path"] == str(base) and m["base"] | delta.base_fingerprint(base) == m["base"]
    assert m["data_fingerprint"] == "abc"
    assert (delta.Path(uri) / "_SUCCESS").is_file()


def test_load_model_with_delta_gives_the_trained_tensors(trained_delta, base):
    uri, plan, trained = trained_delta
    model, tok = delta.load_model_with_delta(base, uri, device="cpu")
    fresh = load_model(base, device="cpu")
    base_params = dict(fresh.named_parameters())
    for name, p in model.named_parameters():
        if name in plan.names:
            assert torch.equal(p, trained[name])
            assert not torch.equal(p, base_params[name])
        else:
            assert torch.equal(p, base_params[name]), name
    assert tok.pad_token is not None


@pytest.mark.parametrize("change", ["weights", "config"])
def test_wrong_base_is_refused(trained_delta, tmp_path, change):
    uri, _, _ = trained_delta
    other = save_tiny(tmp_path / "other", "llama", num_layers=4, seed=1 if change == "weights" else 0,
                      **({"rms_norm_eps": 1e-3} if change == "config" else {}))
    with pytest.raises(SlamError, match=f"wrong base model.*{change.rstrip('s')}"):
        delta.load_model_with_delta(other, uri, device="cpu")


def test_merge_equals_base_plus_delta_exactly(trained_delta, base, tmp_path):
    from slam.cli import main

    uri, plan, trained = trained_delta
    out = tmp_path / "merged"
    assert main(["merge", "--base", str(base), "--delta", uri, "--out", str(out)]) == 0
    merged = dict(load_model(out, device="cpu").named_parameters())
    base_params = dict(load_model(base, device="cpu").named_parameters())
    tensors, _ = delta.load_delta(uri)
    assert set(merged) == set(base_params)
    for name, p in merged.items():
        expect = tensors[name] if name in tensors else base_params[name]
        assert torch.equal(p, expect), name
    assert (out / "tokenizer.json").is_file() or (out / "tokenizer_config.json").is_file()


def test_merge_cli_wrong_base_is_one_line_exit_2(trained_delta, tmp_path, capsys):
    from slam.cli import main

    uri, _, _ = trained_delta
    other = save_tiny(tmp_path / "other", "llama", num_layers=4, seed=3)
    capsys.readouterr()
    assert main(["merge", "--base", str(other), "--delta", uri, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("slam: error: wrong base model")
    assert not (tmp_path / "o").exists()


def test_not_a_delta_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(SlamError, match="not a SLAM delta"):
        delta.load_delta(str(tmp_path))


def test_delta_on_s3_round_trips(trained_delta, base, s3_bucket):
    uri, plan, trained = trained_delta
    tensors, _ = delta.load_delta(uri)
    model = load_model(base, device="cpu")
    delta.apply_delta(model, tensors)
    s3_uri = f"{s3_bucket}/runs/x/delta"
    delta.save_delta(model, plan, s3_uri, {"base_path": str(base)})
    loaded, _ = delta.load_model_with_delta(base, s3_uri, device="cpu")
    for name in plan.names:
        assert torch.equal(dict(loaded.named_parameters())[name], trained[name])
