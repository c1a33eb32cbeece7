"""KFP client network faults: timeouts, bounded retries of idempotent calls, no double POST, one-line errors.

    .venv/bin/python -m pytest -q tests/test_kfp_client_network.py

The real kfp.Client against a fake KFP v2beta1 endpoint on 127.0.0.1 (tests/test_pipeline_submit.py's)
that can answer 503 or hang for the next requests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_pipeline_submit import FakeKfp

from pipeline import kfp_client
from slam.errors import SlamError


class FaultyKfp(FakeKfp):
    def __init__(self):
        super().__init__()
        self.faults: list[tuple[str, int, float]] = []  # (route prefix, status, hang seconds), used in order
        self.lock = threading.Lock()

    def take(self, route: str) -> tuple[int, float] | None:
        with self.lock:
            for i, (prefix, status, hang) in enumerate(self.faults):
                if route.startswith(prefix):
                    self.faults.pop(i)
                    return status, hang
        return None


@pytest.fixture()
def kfp():
    fake = FaultyKfp()

    class Handler(BaseHTTPRequestHandler):
        def _do(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            fault = fake.take(self.path.split("?")[0])
            if fault is not None:
                fake.requests.append({"method": self.command, "route": self.path.split("?")[0], "fault": fault})
                time.sleep(fault[1])
                status, doc = fault[0], {"error": "injected", "code": fault[0]}
            else:
                status, doc = fake.answer(self.command, self.path, body)
            data = json.dumps(doc).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _do

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    fake.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(kfp_client, "TIMEOUT", (2, 1))
    monkeypatch.setattr(kfp_client, "RETRIES", {**kfp_client.RETRIES, "backoff_factor": 0.05})


def _calls(fake, method, route):
    return [r for r in fake.requests if r["method"] == method and r["route"] == route]


def test_reads_are_retried_through_503s_and_a_hang(kfp):
    kfp.recurring["rr-1"] = {"recurring_run_id": "rr-1", "display_name": "weekly", "status": "ENABLED"}
    kfp.faults = [("/apis/v2beta1/recurringruns", 503, 0), ("/apis/v2beta1/recurringruns", 503, 0),
                  ("/apis/v2beta1/recurringruns", 200, 3)]  # the third answer comes after the 1 s read timeout
    t0 = time.monotonic()
    rows = kfp_client.list_schedules(kfp.host)
    assert [r["id"] for r in rows] == ["rr-1"]
    assert len(_calls(kfp, "GET", "/apis/v2beta1/recurringruns")) == 4 and time.monotonic() - t0 < 10


def test_a_create_is_never_sent_twice(kfp, tmp_path):
    """A 503 (or a lost answer) to POST /runs may mean the run exists: no retry, one clear line."""
    pkg = kfp_client.compile_pipeline(tmp_path / "p.yaml")
    kfp.faults = [("/apis/v2beta1/runs", 503, 0)]
    with pytest.raises(SlamError) as e:
        kfp_client.submit(kfp.host, {"languages": "en,de"}, package=pkg)
    assert "create run failed" in str(e.value) and "503" in str(e.value) and "\n" not in str(e.value)
    assert len(_calls(kfp, "POST", "/apis/v2beta1/runs")) == 1
    kfp.faults = [("/apis/v2beta1/runs", 200, 3)]
    with pytest.raises(SlamError, match="create run failed.*[Rr]ead timed out"):
        kfp_client.submit(kfp.host, {"languages": "en,de"}, package=pkg)
    assert len(_calls(kfp, "POST", "/apis/v2beta1/runs")) == 2  # one more, not four
    out = kfp_client.submit(kfp.host, {"languages": "en,de"}, package=pkg)
    assert out["run_id"] == "run-1"
    run = _calls(kfp, "POST", "/apis/v2beta1/runs")[-1]["body"]
    assert run["service_account"] == "slam-pipeline"  # the SA k8s/base/rbac.yaml binds


def test_unreachable_host_is_one_line_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SlamError) as e:
        kfp_client.list_schedules(f"http://127.0.0.1:{port}")
    assert f"KFP at http://127.0.0.1:{port}" in str(e.value) and "\n" not in str(e.value)
    assert time.monotonic() - t0 < 30
