import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slam.arch import build_on_meta
from slam.errors import SlamError
from slam.freeze import apply_plan, format_layers, full_plan, make_plan, trainable_parameters
from slam.models import load_config
from slam.testing import tiny_model

REPO = Path(__file__).resolve().parents[1]

# (layers, roles, names that must be selected, names that must not)
NAME_CASES = [
    ([1], ["up"], {"model.layers.1.mlp.up_proj.weight"},
     {"model.layers.10.mlp.up_proj.weight", "model.layers.11.mlp.up_proj.weight"}),
    ([1], ["down"], {"model.layers.1.mlp.down_proj.weight"}, {"model.layers.1.mlp.up_proj.weight"}),
    ([10], ["up", "down"], {"model.layers.10.mlp.up_proj.weight", "model.layers.10.mlp.down_proj.weight"},
     {"model.layers.1.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"}),
    ([0], ["gate", "up", "down"], {"model.layers.0.mlp.gate_proj.weight"}, {"model.layers.0.self_attn.q_proj.weight"}),
    ([2], ["attention"], {"model.layers.2.self_attn.q_proj.weight", "model.layers.2.self_attn.o_proj.weight"},
     {"model.layers.2.mlp.up_proj.weight", "model.layers.2.input_layernorm.weight"}),
    ([3], ["full-layer"], {"model.layers.3.input_layernorm.weight", "model.layers.3.mlp.gate_proj.weight"},
     {"model.layers.4.input_layernorm.weight", "model.norm.weight"}),
    ([0], ["up", "embeddings"], {"model.embed_tokens.weight"}, {"lm_head.weight", "model.norm.weight"}),
]


@pytest.fixture(scope="module")
def twelve():
    return tiny_model("llama", num_layers=12, tie_word_embeddings=False)


@pytest.mark.parametrize("layers,roles,must,must_not", NAME_CASES)
def test_plan_name_matching(twelve, layers, roles, must, must_not):
    names = make_plan(twelve, layers, roles).names
    assert must <= names
    assert not (must_not & names)


def test_apply_plan_freezes_everything_else_and_optimizer_sees_only_trainable(twelve):
    plan = make_plan(twelve, [0, 5], ["up", "down"])
    n = apply_plan(twelve, plan)
    assert n == plan.trainable == sum(p.numel() for p in trainable_parameters(twelve))
    assert {name for name, p in twelve.named_parameters() if p.requires_grad} == plan.names
    opt = torch.optim.AdamW(trainable_parameters(twelve))
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == plan.trainable


def test_plan_is_pure(twelve):
    before = {n: p.requires_grad for n, p in twelve.named_parameters()}
    make_plan(twelve, [1, 2], ["up"])
    assert before == {n: p.requires_grad for n, p in twelve.named_parameters()}


@pytest.mark.parametrize("layers,roles,match", [
    ([12], ["up"], "out of range"),
    ([0], ["ffn"], "unknown role 'ffn'"),
    ([99], ["bogus"], "unknown role.*out of range"),
])
def test_bad_plans_are_one_clear_error(twelve, layers, roles, match):
    with pytest.raises(SlamError, match=match):
        make_plan(twelve, layers, roles)


@pytest.mark.parametrize("name,layers,expected", [
    ("llama-2-7b", range(6), 0.0803), ("llama-2-13b", range(6), 0.0653), ("llama-2-7b", range(5), 0.0669),
])
def test_paper_arithmetic_on_meta_device(name, layers, expected):
    model = build_on_meta(load_config(REPO / "configs" / "models" / name))
    plan = make_plan(model, layers, ["up", "down"])
    assert round(plan.fraction, 4) == expected
    assert next(model.parameters()).device.type == "meta"


def test_full_plan_counts_tied_embeddings_once():
    m = tiny_model("llama", tie_word_embeddings=True)
    assert full_plan(m).total == sum(p.numel() for p in m.parameters())


def test_format_layers():
    assert format_layers([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def _slam(*args):
    return subprocess.run([sys.executable, "-m", "slam", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_plan_json_and_bad_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the in-process cases name configs/ relative to the repo, like the subprocess ones
    r = _slam("plan", "--model", "configs/models/llama-2-7b", "--layers", "0-5", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["trainable"] == 541_065_216 and len(d["tensors"]) == 12
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    cases = [
        (["--model", str(tmp_path / "missing"), "--layers", "0"], "model path not found"),
        (["--model", "configs/models/llama-2-7b", "--layers", "0-40"], "out of range"),
        (["--model", "configs/models/llama-2-7b", "--layers", "0", "--roles", "ffn"], "unknown role"),
        (["--model", str(tmp_path), "--layers", "0"], "unsupported architecture"),
        (["--model", "configs/models/llama-2-7b", "--layers", "x-y"], "not a layer index"),
    ]
    r = _slam("plan", *cases[0][0])  # one bad input through a real process: exit code 2, one line, no traceback
    assert r.returncode == 2 and cases[0][1] in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    from slam.cli import main  # the rest in-process (a process start is ~6 s): same handler, same message

    for args, msg in cases[1:]:
        capsys.readouterr()
        assert main(["plan", *args]) == 2, args
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
