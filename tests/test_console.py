"""What a person sees: the quiet console of kfp.local runs, progress lines with ETAs, the CLI's help, and a
tracking run that keeps going while MLflow is unreachable.

    .venv/bin/python -m pytest -q tests/test_console.py
"""

from __future__ import annotations

import io
import re
import socket
import time

import pytest

KFP_LINES = """\
06:28:04.1 - INFO - Running pipeline: \x1b[95m'slam'\x1b[0m
--------------------------------------------------------------------------------
06:28:04.2 - INFO - Executing task \x1b[96m'train-slam'\x1b[0m
06:28:04.2 - INFO - Streamed logs:
    [KFP Executor 2026-11-29 06:28:05,1 INFO]: Got executor_input:
    {
        "inputs": {"parameterValues": {"storage": "runs"}}
    }
    \x1b[36m(RayTrainWorker pid=1627)\x1b[0m [WARNING] [real_accelerator.py:213] Setting accelerator to CPU.
    Trial status: 1 TERMINATED | 1 RUNNING
    \x1b[36m(RayTrainWorker pid=1627)\x1b[0m » train 1/6 step 16% | 2.0 s/step | ETA 10s | loss 2.100
    \x1b[36m(RayTrainWorker pid=1627)\x1b[0m » train 2/6 step 33% | 2.0 s/step | ETA 8s | loss 2.000
    [KFP Executor 2026-11-29 06:28:06,1 WARNING]: MLflow unreachable at http://x (refused): buffering run r's logs, training goes on
    \x1b[36m(RayTrainWorker pid=1627)\x1b[0m » train 6/6 step 100% | 2.0 s/step | took 12s | loss 1.500
    \x1b[36m(RayTrainWorker pid=1628)\x1b[0m » train 6/6 step 100% | 2.0 s/step | took 12s | loss 1.500
06:28:20.1 - INFO - Task \x1b[96m'train-slam'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
06:28:20.2 - INFO - Executing task \x1b[96m'register-model'\x1b[0m
    Traceback (most recent call last):
    slam.errors.SlamError: MLflow set alias failed
06:28:21.2 - INFO - Task \x1b[96m'register-model'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m
"""


def test_quiet_console_shows_steps_progress_and_notices_and_logs_everything(tmp_path):
    from pipeline.console import QuietConsole

    out = io.StringIO()
    with QuietConsole(tmp_path / "logs", out=out):
        print(KFP_LINES, end="")
    shown = out.getvalue().splitlines()
    assert shown[0] == "  ▶ train-slam"
    assert re.fullmatch(r"  ✓ train-slam +\d+s", shown[-7]) or any(re.fullmatch(r"  ✓ train-slam +\d+s", x) for x in shown)
    assert "    » train 1/6 step 16% | 2.0 s/step | ETA 10s | loss 2.100" in shown   # the first progress line
    assert "    » train 2/6 step 33% | 2.0 s/step | ETA 8s | loss 2.000" not in shown  # < 30 s later: folded
    assert shown.count("    » train 6/6 step 100% | 2.0 s/step | took 12s | loss 1.500") == 1  # finished bar, once
    assert any("MLflow unreachable" in x for x in shown)
    assert any(x.startswith("  ✗ register-model") and "FAILURE" in x for x in shown)
    assert any("SlamError: MLflow set alias failed" in x for x in shown)   # a failing step shows its last lines
    text = out.getvalue()
    for noise in ("executor_input", "Trial status", "Setting accelerator", "Running pipeline", "\x1b["):
        assert noise not in text, noise
    log = (tmp_path / "logs" / "pipeline.log").read_text()
    assert "executor_input" in log and "Trial status" in log and "\x1b[" not in log    # everything, without colors
    assert "Setting accelerator" in (tmp_path / "logs" / "train-slam.log").read_text()
    assert "register-model" not in (tmp_path / "logs" / "train-slam.log").read_text()


def test_verbose_console_passes_everything_through(tmp_path):
    from pipeline.console import QuietConsole

    out = io.StringIO()
    with QuietConsole(tmp_path / "logs", verbose=True, out=out):
        print(KFP_LINES, end="")
    assert "executor_input" in out.getvalue() and "Trial status" in out.getvalue()


def test_progress_lines_have_an_eta_and_are_throttled(capsys, monkeypatch):
    from slam.progress import LineProgress, fmt_seconds, progress

    clock = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    bar = LineProgress(10, "generate", "q", every_s=5.0)
    for _ in range(10):
        clock[0] += 1.0
        bar.update(1, acc="12%")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "» generate 1/10 q 10% | 1.0 s/q | ETA 9s | acc 12%"
    assert len(lines) == 3 and lines[-1] == "» generate 10/10 q 100% | 1.0 s/q | took 10s | acc 12%"
    assert fmt_seconds(3725) == "1h02m" and fmt_seconds(61) == "1m01s"
    monkeypatch.setenv("SLAM_PROGRESS", "off")
    progress(5, "x").update(5)
    assert capsys.readouterr().err == ""


def test_concurrent_items_get_their_rate_from_the_first_finished_one(capsys, monkeypatch):
    """A batch of answers finishes 19 s after it started, then one every 0.5 s: the ETA must not read
    143 x 19 s (45 min) after the first answer, and must settle on 0.5 s each."""
    from slam.progress import LineProgress

    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    bar = LineProgress(144, "generate", "q", every_s=0.0, concurrent=True)
    clock[0] = 19.0
    bar.update(1)
    for _ in range(10):
        clock[0] += 0.5
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "» generate 1/144 q 0%"                      # one finished item says nothing of the rate
    assert lines[-1] == "» generate 11/144 q 7% | 2.0 q/s | ETA 1m06s"  # 133 left x 0.5 s
    bar.update(133)
    assert capsys.readouterr().err.splitlines()[-1].endswith("| took 24s")
    plain = LineProgress(144, "train", "step", every_s=0.0)          # sequential items: elapsed / done
    clock[0] += 10
    plain.update(1)
    assert "10.0 s/step | ETA 23m50s" in capsys.readouterr().err


def test_bare_slam_prints_help_and_every_subcommand_explains_itself(capsys):
    import argparse

    from slam.cli import build_parser, main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: slam" in out and "examples:" in out and "demo" in out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("slam ")
    assert main(["data"]) == 0 and "synth" in capsys.readouterr().out       # a group run bare: its help

    def leaves(parser: argparse.ArgumentParser, path: tuple = ()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path, parser
        for s in subs:
            for name, p in s.choices.items():
                yield from leaves(p, (*path, name))

    found = list(leaves(build_parser()))
    assert len(found) >= 18
    for path, p in found:
        assert p.description and p.epilog and "examples:" in p.epilog, path
        assert "slam " + " ".join(path) in p.epilog, path      # the examples are of this very command
        for a in p._actions:
            assert a.help, (path, a.dest)                      # every flag says what it does
    # defaults are shown, and one override syntax everywhere: --set and -p are gone
    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "SECTION.KEY=VALUE" in train_help
    for cmd in (["tune", "--set", "a.b=1"], ["pipeline", "run", "-p", "a=1"], ["register", "--set", "a.b=1"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(cmd)
    capsys.readouterr()


def test_a_background_run_never_blocks_or_raises_when_mlflow_is_unreachable(caplog):
    import mlflow.entities  # noqa: F401 - imported before the clock starts (seconds on a busy box)

    from slam.tracking import MlflowTracker

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = MlflowTracker(f"http://127.0.0.1:{port}", outage_wait_s=1.0)
    start = time.time()
    with t.run("train", key="k", background=True) as run:
        for step in range(200):
            run.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
        run.log_params({"lr": 1e-4})
        logged = time.time() - start
    assert logged < 2.0                         # logging returned at once: nothing waited on MLflow
    assert time.time() - start < 10             # and the end waited only outage_wait_s for it
    assert run.id == "" and run.outages == 1
    assert any("unreachable" in r.message and "training goes on" in r.message for r in caplog.records)
    assert any("stayed unreachable" in r.message for r in caplog.records)
