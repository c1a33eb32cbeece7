"""bench/gpu.py (the 7B preset on a GPU) cannot rot: its CPU smoke runs the same preset loop on a tiny shape.

    .venv/bin/python -m pytest -q tests/test_gpu_bench.py
"""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_7b_flops_give_the_slam_floor_of_the_issue():
    g = _gpu_bench()
    shape = g.SHAPES["7b"]
    full = g.flops_per_token(shape, 1024, "full", [], [])
    slam = g.flops_per_token(shape, 1024, "slam", [0, 1, 2, 3, 4, 5], ["up", "down"])
    assert 6.4e9 < full["N"] < 6.8e9                       # LLaMA-2-7B without the input embedding
    assert slam["N_trained"] == 6 * 2 * 4096 * 11008         # the paper's 6 layers x up+down
    n, nt = slam["N"], slam["N_trained"]
    # attention FLOPs aside, SLAM's step is (4N + 2N_t) / 6N of full fine-tuning's
    assert slam["flops_per_token"] / full["flops_per_token"] == pytest.approx((4 * n + 2 * nt) / (6 * n), abs=0.01)
    upper = g.flops_per_token(shape, 1024, "slam", [26, 27, 28, 29, 30, 31], ["up", "down"])
    assert upper["flops_per_token"] < slam["flops_per_token"]  # no activation gradients below layer 26


def test_cpu_smoke_runs_the_preset_loop_for_both_methods(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    res = _gpu_bench().main(["--shape", "tiny", "--steps", "1", "--micro", "1", "--work", str(tmp_path)])
    by = {m["method"]: m for m in res["methods"]}
    assert set(by) == {"slam", "full"}
    assert json.loads((tmp_path / "results-tiny.json").read_text()) == json.loads(json.dumps(res))
    for m in by.values():
        assert len(m["steps_s"]) == 1 and m["steps_s"][0] > 0 and m["tokens_per_s_per_gpu"] > 0
        assert (m["engine"], m["zero_stage"], m["precision"], m["gradient_checkpointing"]) == ("deepspeed", 2, "bf16", True)
    assert by["slam"]["N_trained"] == 6 * 2 * 32 * 64 < by["full"]["N_trained"]
    assert "slam/full: step time" in capsys.readouterr().out
    # the loop was stopped before its end: no final checkpoint (7B full FT's would be ~80 GB)
    assert not list((tmp_path / "runs").rglob("latest.json"))
