"""Ray Job Submission against a REAL local Ray cluster (`ray start --head` with the dashboard on 127.0.0.1).

    .venv/bin/python -m pytest -q -m integration tests/test_launch_ray_jobs.py

The cluster gets its own --temp-dir, so other tests' `ray.init()` never attach to it, and teardown
kills only the processes this fixture started (never `ray stop`, which would stop every Ray on the box).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from slam.distributed.job_submission import JobSubmissionRunner, submission_id_for
from slam.errors import SlamError

pytestmark = pytest.mark.integration
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(proc: subprocess.Popen, temp_dir: str) -> None:
    import psutil

    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    # Ray daemons that re-parented still name our private temp dir on their command line.
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and any(temp_dir in c for c in (p.info["cmdline"] or [])) and p not in procs:
            procs.append(p)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def ray_dashboard():
    if not RAY.exists():
        pytest.skip("ray CLI not installed next to this python")
    try:
        import aiohttp_cors  # noqa: F401  (ray[default]: the dashboard needs it)
    except ImportError:
        pytest.skip("ray[default] is not installed (no dashboard / Job Submission API)")
    temp_dir = tempfile.mkdtemp(prefix="slamray-", dir="/tmp")  # short: Ray's unix sockets live under it
    # Every port explicit: Ray's fixed defaults (agent 52365, …) collide with other Ray instances on the box.
    port, dash, agent, grpc, renv, metrics = (_free_port() for _ in range(6))
    # token auth on (conftest: RAY_AUTH_MODE=token and the session's RAY_AUTH_TOKEN): the dashboard and
    # the Job Submission API answer only requests that carry the token
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
         f"--runtime-env-agent-port={renv}", f"--metrics-export-port={metrics}",
         "--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        import requests

        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")[-3000:] if proc.stdout else ""
                pytest.fail(f"ray start exited {proc.returncode}:\n{out}")
            try:
                if requests.get(f"{address}/api/version", timeout=2, headers=_auth()).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("Ray dashboard did not come up in 90 s")
            time.sleep(1)
        yield address
    finally:
        _kill_tree(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _auth(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or os.environ['RAY_AUTH_TOKEN']}"}


def test_the_dashboard_refuses_requests_without_the_token(ray_dashboard):
    import requests

    assert requests.get(f"{ray_dashboard}/api/jobs/", timeout=10).status_code == 401
    assert requests.get(f"{ray_dashboard}/api/jobs/", timeout=10, headers=_auth("0" * 64)).status_code == 403
    assert requests.get(f"{ray_dashboard}/api/jobs/", timeout=10, headers=_auth()).status_code == 200


def _py(code: str) -> list[str]:
    # The job driver runs in the raylet's env: use this interpreter explicitly.
    return [sys.executable, "-c", code]


def test_submit_wait_read_results_and_reattach(ray_dashboard, tmp_path):
    out = tmp_path / "result.json"
    lines: list[str] = []
    client = JobSubmissionRunner(ray_dashboard, poll_s=0.5, echo=lines.append)
    sid = submission_id_for(f"run-{tmp_path.name}", "train")
    code = ("import json, os, ray; ray.init(); "
            "n = ray.get(ray.remote(lambda x: x * x).remote(7)); "
            f"json.dump({{'square': n, 'stage': os.environ['SLAM_STAGE']}}, open({str(out)!r}, 'w')); "
            "print('RESULT square', n)")
    res = client.run(_py(code), sid, timeout_s=120, env={"SLAM_STAGE": "unit"})
    assert res.status == "SUCCEEDED" and not res.reattached and res.submission_id == sid
    assert "RESULT square 49" in res.logs
    import json

    assert json.loads(out.read_text()) == {"square": 49, "stage": "unit"}
    assert any("RESULT square 49" in ln for ln in lines)

    # A retried pipeline step: same id -> the finished job is re-attached, nothing new is submitted.
    before = len(client.client.list_jobs())
    again = JobSubmissionRunner(ray_dashboard, poll_s=0.5, echo=lines.append).run(_py("raise SystemExit(5)"), sid,
                                                                           timeout_s=60)
    assert again.reattached and again.status == "SUCCEEDED"
    assert len(client.client.list_jobs()) == before


def test_failure_is_reported_then_a_retry_submits_a_new_attempt(ray_dashboard, tmp_path):
    client = JobSubmissionRunner(ray_dashboard, poll_s=0.5, echo=lambda s: None)
    sid = submission_id_for(f"run-{tmp_path.name}", "tune")
    with pytest.raises(SlamError) as e:
        client.run(_py("import sys; print('bad layer index 99'); sys.exit(3)"), sid, timeout_s=120)
    assert "FAILED" in str(e.value) and "bad layer index 99" in str(e.value)
    res = client.run(_py("print('second try ok')"), sid, timeout_s=120)
    assert res.submission_id == f"{sid}-r1" and res.status == "SUCCEEDED" and "second try ok" in res.logs


def test_timeout_leaves_the_job_running_and_says_how_to_stop_it(ray_dashboard, tmp_path):
    client = JobSubmissionRunner(ray_dashboard, poll_s=0.5, echo=lambda s: None)
    sid = submission_id_for(f"run-{tmp_path.name}", "slow")
    with pytest.raises(SlamError, match="ray job stop"):
        client.run(_py("import time; time.sleep(60)"), sid, timeout_s=2)
    client.client.stop_job(sid)


def test_unreachable_address_is_one_clear_error():
    slept: list[float] = []  # the default policy's backoff, recorded instead of waited out (~31 s)
    with pytest.raises(SlamError, match="cannot reach the Ray dashboard"):
        JobSubmissionRunner(f"http://127.0.0.1:{_free_port()}", sleep=slept.append)
    assert len(slept) == 5 and sum(slept) > 20  # ridden out like a restarting head, then one error


@pytest.mark.slow  # ~60-110 s: cluster start + a Ray Train fit inside the submitted job
def test_real_slam_train_job_on_the_cluster(ray_dashboard, tmp_path, tiny_model_dir):
    """The production entrypoint (`slam train --config …`), submitted exactly like a pipeline step would."""
    import yaml

    from slam.data.synth import synth

    data = tmp_path / "data"
    synth(str(data), langs=["en", "de"], n_train=8, n_val=2, n_test=2, n_probe=2, seed=0)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"path": str(tiny_model_dir)},
        "data": {"train": str(data), "langs": ["en", "de"], "max_length": 2048},
        "train": {"engine": "torch", "layers": [0], "max_steps": 2, "micro_batch_size": 2, "num_workers": 1,
                  "report_every": 1},
        "storage": {"root": str(tmp_path / "runs")},
    }))
    lines: list[str] = []
    res = JobSubmissionRunner(ray_dashboard, poll_s=1.0, echo=lines.append).run(
        [sys.executable, "-m", "slam", "train", "--config", str(cfg)],
        submission_id_for(f"run-{tmp_path.name}", "train"), timeout_s=240)
    assert res.status == "SUCCEEDED", res.logs[-3000:]
    delta_uri = res.logs.strip().splitlines()[-1].strip()
    assert delta_uri.startswith(str(tmp_path / "runs")) and Path(delta_uri, "_SUCCESS").exists(), res.logs[-2000:]
