"""Pytest plugin: a real `mlflow server` on 127.0.0.1 (sqlite backend, artifacts proxied to the moto S3 server).

    pytest -q -m integration tests/test_registry.py        # fixtures: mlflow_server, mlflow_uri

One server per test session (~5 s to start). `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false` keeps it at two
processes (~0.6 GiB) instead of ten (~2.6 GiB). `mlflow_server.stop()` / `.start()` let a test simulate an
outage; the fixture restarts it so later tests still have a server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A `mlflow server` subprocess we own; `uri` stays the same across stop()/start()."""

    def __init__(self, workdir: Path, s3_endpoint: str, bucket: str) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.s3_endpoint = s3_endpoint
        self.bucket = bucket
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> None:  # a busy 2-core box needs more than 60 s
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint, "AWS_ENDPOINT_URL": self.s3_endpoint}
        cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
               "--artifacts-destination", f"s3://{self.bucket}/artifacts", "--serve-artifacts", "--workers", "1"]
        self.log = open(self.workdir / "server.log", "ab")
        # own process group: stop() ends the server and its uvicorn child, nothing else
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {timeout} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="session")
def mlflow_server(s3_server, tmp_path_factory):
    """A real MLflow tracking + registry server for the session; artifacts land in the moto S3 server."""
    from slam import storage

    bucket = "mlflow-test"
    storage.s3_client().create_bucket(Bucket=bucket)
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), s3_server, bucket)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def mlflow_uri(mlflow_server, monkeypatch) -> str:
    """The server's URI, also as MLFLOW_TRACKING_URI (restarted first if a test stopped it)."""
    if not mlflow_server.running:
        mlflow_server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    return mlflow_server.uri
