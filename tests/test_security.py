"""Credentials stay out of messages, logs, MLflow and files; Ray runs with token auth; placeholder secrets stop
a start. (Storage faults: tests/test_publish.py; bad input: tests/test_bad_input.py; k8s: tests/test_k8s.py.)

    .venv/bin/python -m pytest -q tests/test_security.py
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from slam.redact import carries_credentials, install_log_filter, redact, strip_userinfo


@pytest.mark.parametrize("text,secret", [
    ("http://alice:s3cr3tpw@mlflow:5000/api", "s3cr3tpw"),
    ("postgresql+psycopg2://mlflow:pg-pass-123@db:5432/mlflow", "pg-pass-123"),
    ("train.overrides: password=hunter2x; lr=1", "hunter2x"),
    ('{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}', "wJalrXUtnFEMI/K7MDENG"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc", "eyJhbGciOiJIUzI1NiJ9.abc"),
    ("key AKIA" "IOSFODNN7EXAMPLE in a message", "IOSFODNN7EXAMPLE"),
    ("s3://b/x?X-Amz-Signature=abcdef0123456789", "abcdef0123456789"),
])
def test_redact_masks_credentials(text, secret):
    assert secret not in redact(text)
    assert carries_credentials(text)


@pytest.mark.parametrize("text", ["TOKENIZERS_PARALLELISM=false", "max_new_tokens=160", "s3://bucket/runs/x",
                                  "http://mlflow:5000", "RAY_AUTH_MODE=token", "train.lr=2e-5"])
def test_redact_leaves_ordinary_text_alone(text):
    assert redact(text) == text and carries_credentials(text) is None


def test_the_value_of_a_secret_env_var_is_masked_anywhere(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "correct-horse-battery")
    assert redact("login failed for correct-horse-battery at x") == "login failed for *** at x"


def test_strip_userinfo():
    assert strip_userinfo("https://u:p@mlflow.example.com:443/x") == "https://mlflow.example.com:443/x"
    assert strip_userinfo("http://mlflow:5000") == "http://mlflow:5000"


def test_log_records_are_redacted(capsys):
    log = logging.getLogger("slam.test.redact")
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_log_filter()
        log.warning("connecting to %s", "http://bob:pa55word99@mlflow:5000")
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "pa55word99" not in err and "bob:***@mlflow" in err


def test_mlflow_params_and_tags_are_redacted(tmp_path):
    """A tracking URI or an override string with a password, logged as params/tags of a real MLflow run."""
    from slam.config import TrackingConfig
    from slam.tracking import get_tracker

    tracker = get_tracker(TrackingConfig(uri=f"sqlite:///{tmp_path / 'm.db'}", experiment="redact"))
    with tracker.run("r", key="redact/1", tags={"source": "http://u:tagsecret77@host/x"}) as run:
        run.log_params({"tracking.uri": "http://u:paramsecret77@mlflow:5000", "overrides": "token=abcdef123456"})
        run_id = run.id
    got = tracker.client.get_run(run_id).data
    text = repr(got.params) + repr(got.tags)
    assert "paramsecret77" not in text and "tagsecret77" not in text and "abcdef123456" not in text
    assert got.params["tracking.uri"] == "http://u:***@mlflow:5000"


def test_configs_written_to_files_carry_no_tracking_password():
    from slam.config import SlamConfig, dump_config

    cfg = SlamConfig().replace(tracking={"uri": "https://admin:filesecret9@mlflow.example.com"})
    text = dump_config(cfg)
    assert "filesecret9" not in text and "uri: https://mlflow.example.com" in text


def test_worker_env_never_carries_a_credential(monkeypatch):
    from slam.env import worker_env

    monkeypatch.setenv("RAY_AUTH_TOKEN", "a" * 64)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://u:workersecret1@mlflow:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3:8333")
    env = worker_env()
    assert "RAY_AUTH_TOKEN" not in env and "MLFLOW_TRACKING_URI" not in env
    assert env["AWS_ENDPOINT_URL"] == "http://s3:8333" and env["RAY_AUTH_MODE"] == "token"


@pytest.mark.parametrize("value,refused", [("CHANGE_ME", True), ("change-me", True), ("<your secret>", True),
                                           ("your-access-key", True), ("xxxx", True), ("wJalrXUtnFEMI", False),
                                           ("testing", False)])
def test_placeholder_credentials(value, refused):
    from slam.env import check_credentials
    from slam.errors import SlamError

    if refused:
        with pytest.raises(SlamError, match="AWS_SECRET_ACCESS_KEY hold placeholder values"):
            check_credentials({"AWS_SECRET_ACCESS_KEY": value})
    else:
        check_credentials({"AWS_SECRET_ACCESS_KEY": value})


def test_the_init_container_check_exits_nonzero_on_placeholders():
    env = {**os.environ, "POSTGRES_PASSWORD": "CHANGE_ME"}
    r = subprocess.run([sys.executable, "-m", "slam.env"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "slam: error: POSTGRES_PASSWORD hold placeholder values (e.g. CHANGE_ME from an example Secret): create "
        "the real Secret first (docs/deploy.md); refusing to start"]
    env["POSTGRES_PASSWORD"] = "a-real-one-8c1f"
    assert subprocess.run([sys.executable, "-m", "slam.env"], env=env, capture_output=True, timeout=120).returncode == 0


# ------------------------------------------------------------------------------------------- Ray token auth

def test_ray_token_auth_is_the_default():
    from slam.env import DEFAULTS

    assert DEFAULTS["RAY_AUTH_MODE"] == "token"
    assert os.environ.get("RAY_AUTH_MODE") == "token"  # the test session itself (conftest) runs with it


RAY_PROBE = textwrap.dedent("""
    import os, sys
    os.environ.pop("RAY_AUTH_TOKEN", None)            # as a user's shell: no token set anywhere
    os.environ["HOME"] = sys.argv[1]                   # and no ~/.ray/auth_token
    from slam.distributed.train import init_ray
    import ray, grpc
    from ray.core.generated import gcs_service_pb2 as pb, gcs_service_pb2_grpc as pbg
    init_ray(None, 1)
    token = os.environ["RAY_AUTH_TOKEN"]
    assert not os.path.exists(os.path.join(sys.argv[1], ".ray", "auth_token")), "token written to disk"
    stub = pbg.NodeInfoGcsServiceStub(grpc.insecure_channel(ray.get_runtime_context().gcs_address))
    for label, md in [("none", ()), ("wrong", (("authorization", "Bearer " + "0" * 64),)),
                      ("right", (("authorization", "Bearer " + token),))]:
        try:
            stub.GetAllNodeInfo(pb.GetAllNodeInfoRequest(), metadata=md, timeout=30)
            print(label, "OK")
        except grpc.RpcError as e:
            print(label, e.code().name)
    print("task", ray.get(ray.remote(lambda: 41 + 1).remote()))
    ray.shutdown()
""")


def test_local_ray_started_by_slam_refuses_unauthenticated_clients(tmp_path):
    """slam's local Ray (init_ray) gets a per-session token: a client without it (or with another) is refused
    by the GCS, one with it is served, and slam's own tasks run."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    r = subprocess.run([sys.executable, "-c", RAY_PROBE, str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=600)
    lines = r.stdout.split()
    assert r.returncode == 0, r.stderr[-3000:]
    assert lines[lines.index("none") + 1] == "UNAUTHENTICATED"
    assert lines[lines.index("wrong") + 1] == "UNAUTHENTICATED"
    assert lines[lines.index("right") + 1] == "OK" and "task 42" in r.stdout
