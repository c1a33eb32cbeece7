"""Registry: the promotion gate (pure, table-driven) and, against a real MLflow server + S3 API server,
register / promote / reject / re-register / load back by alias and generate.

    .venv/bin/python -m pytest -q tests/test_registry.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slam.config import TrackingConfig
from slam.errors import SlamError
from slam.registry import Scores, gate, scores_from_eval


@pytest.mark.parametrize("cand,champ,tol,promote,why", [
    (Scores(0.30, 0.50), None, 1.0, True, "no champion"),
    (Scores(0.30, 0.50), Scores(0.25, 0.50), 1.0, True, "beats"),
    (Scores(0.25, 0.50), Scores(0.25, 0.50), 1.0, False, "does not beat"),        # a tie does not move it
    (Scores(0.20, 0.60), Scores(0.25, 0.50), 1.0, False, "does not beat"),
    (Scores(0.40, 0.45), Scores(0.25, 0.50), 1.0, False, "English accuracy drops 5.0 points"),
    (Scores(0.40, 0.495), Scores(0.25, 0.50), 1.0, True, "beats"),                # 0.5 points: within 1
    (Scores(0.40, 0.45), Scores(0.25, 0.50), 5.0, True, "beats"),                 # tolerance is configurable
    (Scores(0.40, None), Scores(0.25, 0.50), 1.0, True, "beats"),                 # no English eval: no check
])
def test_gate(cand, champ, tol, promote, why):
    ok, reason = gate(cand, champ, tol)
    assert ok is promote
    assert why in reason


def test_scores_from_eval():
    rep = {"per_lang": {"en": {"accuracy": 0.5}, "de": {"accuracy": 0.2}, "sw": {"accuracy": 0.1}}}
    s = scores_from_eval(rep)
    assert s.english == 0.5 and s.average_non_en == pytest.approx(0.15)
    assert scores_from_eval({**rep, "average_non_en": 0.3, "english": 0.4}) == Scores(0.3, 0.4)
    with pytest.raises(SlamError, match="per_lang"):
        scores_from_eval({"average": 0.3})


def test_register_needs_a_tracking_uri(tmp_path, monkeypatch):
    from slam.registry import register_delta

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SlamError, match="tracking URI"):
        register_delta(TrackingConfig(), str(tmp_path), str(tmp_path / "eval.json"), name="x")


def test_register_refuses_a_non_delta_dir(tmp_path):
    from slam.registry import register_delta

    (tmp_path / "eval.json").write_text(json.dumps({"per_lang": {"de": {"accuracy": 0.1}}}))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(SlamError, match="not a SLAM delta dir"):
        register_delta(TrackingConfig(uri=uri), str(tmp_path), str(tmp_path / "eval.json"), name="x")


# --------------------------------------------------------------------------------------------------
# Against a real MLflow server


def make_delta(base: Path, out: Path, seed: int) -> Path:
    """A real delta (slam.delta.save_delta) of the tiny base with layers 1,2 perturbed by `seed`."""
    import torch

    from slam.delta import save_delta
    from slam.freeze import make_plan
    from slam.models import load_model

    model = load_model(base, device="cpu")
    plan = make_plan(model, [1, 2], ["up", "down"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in plan.names:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
    save_delta(model, plan, out, {"base_path": str(base), "data_fingerprint": "data-abc"})
    return out


def write_eval(path: Path, de: float, sw: float, en: float) -> Path:
    per = {"de": {"accuracy": de, "correct": 0, "total": 10}, "sw": {"accuracy": sw, "correct": 0, "total": 10},
           "en": {"accuracy": en, "correct": 0, "total": 10}}
    path.write_text(json.dumps({"per_lang": per, "average": (de + sw + en) / 3, "average_non_en": (de + sw) / 2,
                                "english": en, "samples": []}))
    return path


@pytest.mark.integration
def test_registry_gate_against_real_server(mlflow_uri, tiny_model_dir, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    from slam.registry import register_delta

    cfg = TrackingConfig(uri=mlflow_uri, experiment="registry-test", english_tolerance=1.0)
    name = "slam-tiny"
    reg = lambda seed, de, sw, en, **kw: register_delta(  # noqa: E731
        cfg, str(make_delta(tiny_model_dir, tmp_path / f"delta{seed}", seed)),
        str(write_eval(tmp_path / f"eval{seed}.json", de, sw, en)), name=name, **kw)

    first = reg(1, 0.30, 0.30, 0.50, merged=True)
    assert (first.version, first.alias, first.created) == ("1", "champion", True)
    worse = reg(2, 0.20, 0.20, 0.60)
    assert (worse.alias, worse.promoted) == ("challenger", False)
    assert "does not beat" in worse.reason
    english_drop = reg(3, 0.45, 0.45, 0.45)
    assert english_drop.alias == "challenger" and "English accuracy drops 5.0 points" in english_drop.reason
    better = reg(4, 0.40, 0.40, 0.495)
    assert (better.version, better.alias) == ("4", "champion")

    again = reg(4, 0.40, 0.40, 0.495)   # same delta bytes -> same fingerprint -> no new version
    assert (again.created, again.version, again.alias) == (False, "4", "champion")

    client = MlflowClient(mlflow_uri)
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 4
    champ = client.get_model_version_by_alias(name, "champion")
    assert champ.version == "4"
    assert champ.tags["slam.layers"] == "1,2" and champ.tags["acc_de"] == "0.400000"
    assert champ.tags["slam.data_fingerprint"] == "data-abc"
    assert client.get_model_version_by_alias(name, "challenger").version == "3"
    v1 = client.get_model_version(name, "1")
    assert v1.tags["slam.merged_uri"] == f"runs:/{first.run_id}/merged"
    assert {f.path for f in client.list_artifacts(first.run_id, "merged")} >= {"merged/MLmodel"}

    mlflow.set_tracking_uri(mlflow_uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    out = model.predict(["Janet has 3 apples and buys 5 more."], params={"max_new_tokens": 4})
    assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], str)

    # the served model is base + delta 4, not the base: its up_proj equals the delta's tensor exactly
    from slam.delta import load_delta

    tensors, _ = load_delta(tmp_path / "delta4")
    served = dict(model.unwrap_python_model().model.named_parameters())
    for k, v in tensors.items():
        assert served[k].detach().equal(v)

    # artifacts were proxied to the S3 API server, not written to local disk
    from slam import storage

    keys = storage.s3_client().list_objects_v2(Bucket="mlflow-test", Prefix="artifacts/")
    assert any(o["Key"].endswith("delta.safetensors") for o in keys.get("Contents", []))


def test_cli_register_embedded_store_and_bad_input(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from slam.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    delta = make_delta(tiny_model_dir, tmp_path / "delta", seed=7)
    ev = write_eval(tmp_path / "eval.json", 0.3, 0.2, 0.5)
    args = ["register", "--delta", str(delta), "--eval", str(ev), "--name", "cli-model", "--tracking-uri", uri]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cli-model version 1 is the new champion: no champion yet" in out
    assert json.loads(out[out.index("{"):])["version"] == "1"
    assert main(args) == 0
    assert "already version 1 of cli-model; nothing registered" in capsys.readouterr().out
    assert main([*args[:4], str(tmp_path / "missing.json"), *args[5:]]) == 2
    err = capsys.readouterr().err
    assert "missing.json" in err and len(err.strip().splitlines()) == 1
