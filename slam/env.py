"""Runtime environment defaults: one place, applied early in every process slam starts.

    from slam import env
    env.apply_defaults()          # the CLI, each KFP step and the Ray driver call this first
    env.worker_env()              # {name: value} of what Ray workers / RayJobs must inherit
    env.configure_logging()       # the CLI: slam's INFO lines, other libraries' warnings quiet unless --verbose

Defaults never override what the user (or the pod spec) already set. Secrets are never listed here:
credentials reach a process only through its own environment (k8s Secrets, the user's shell).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Why each default: no model or dataset is ever downloaded at run time; tokenizers' thread pool fights
# torch's on small machines; each ray.train.report() costs ~2 s at Ray's default health-check interval;
# the MLflow server's job runner costs ~2 GiB we never use.
DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # MLflow prints "View run <url>" on every run end (a URL that opens the GenAI view); slam prints its
    # own links where they help (the demo summary)
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # Ray token auth, explicitly (Ray 2.60's default for new local clusters, but not when joining one): an
    # open Ray runs anyone's code with this process's credentials. Local clusters get a per-session token
    # (slam.distributed.train.init_ray); KubeRay injects the cluster's (authOptions.mode: token).
    "RAY_AUTH_MODE": "token",
}
# Values that mean "nobody filled this in" (k8s/secrets/*.example, copied docs): refused at start-up.
PLACEHOLDER = re.compile(r"(?i)^\s*(<.*>|.*change[_-]?me.*|replace[_-]?me|placeholder|your[_-].*|x{3,}|todo)\s*$")
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                  "POSTGRES_USER", "POSTGRES_PASSWORD", "RAY_AUTH_TOKEN", "SLAM_KFP_TOKEN")

# What a Ray worker (or a RayJob's pods) must see of the driver's environment. Never credentials: pods get
# those from Secrets, local workers inherit the driver's process environment anyway.
WORKER_ENV = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "TORCH_EXTENSIONS_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
              "TOKENIZERS_PARALLELISM", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION",
              "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "SLAM_FAIL_AT_STEP", "SLAM_MODELS_DIR",
              "RAY_AUTH_MODE", "SLAM_VERBOSE", "SLAM_PROGRESS", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")

# Loggers whose INFO/WARNING lines are known-harmless on a working run (what a verbose run still shows):
# DeepSpeed's "Setting accelerator to CPU", Ray Train/Tune's lifecycle chatter, MLflow's model-logging
# notes, transformers' load reports, urllib3's retry notes.
NOISY_LOGGERS = ("DeepSpeed", "deepspeed", "ray", "ray.train", "ray.tune", "mlflow", "transformers", "urllib3",
                 "filelock", "torch.distributed")
HARMLESS_WARNINGS = (
    r".*all_gather_into_tensor.*deprecated.*",  # torch, inside DeepSpeed ZeRO on gloo
    r".*TypedStorage is deprecated.*",
    r".*torch\.cuda\.amp.*deprecated.*",
    r".*Setting accelerator to CPU.*",
)


def cache_dir() -> Path:
    """slam's own cache root (models resolved from URIs, DeepSpeed JIT builds): $SLAM_CACHE_DIR or ~/.cache/slam."""
    root = os.environ.get("SLAM_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                            os.path.join(Path.home(), ".cache"), "slam")
    return Path(root)


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    # DeepSpeed JIT-compiles its CPU comm op on first use (~25 s): keep the build where it survives.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))
    quiet_known_noise()


def quiet_known_noise() -> None:
    """Unless SLAM_VERBOSE: the noisy libraries at ERROR, known-harmless Python warnings off. Every
    process slam starts calls this (through apply_defaults); full logs are still written where they go."""
    import logging
    import warnings

    if os.environ.get("SLAM_VERBOSE"):
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def configure_logging(verbose: bool = False, debug: bool = False) -> None:
    """The CLI's logging: `HH:MM:SS message` from slam at INFO (DEBUG with --debug), everything from every
    library with --verbose."""
    import logging

    level = logging.DEBUG if debug else logging.INFO
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if (verbose or debug) else "%(asctime)s %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S")


def worker_env() -> dict[str, str]:
    """WORKER_ENV's current values; never a credential (those would land in Ray's runtime_env / a spec)."""
    from slam.redact import SECRET_ENV, carries_credentials

    return {k: os.environ[k] for k in WORKER_ENV
            if k in os.environ and not SECRET_ENV.search(k) and not carries_credentials(os.environ[k])}


def check_credentials(environ: dict[str, str] | None = None) -> None:
    """Refuse to start on placeholder credentials (an example Secret applied unfilled): a clear error now,
    instead of a service that quietly runs on a published password."""
    from slam.errors import SlamError

    env = os.environ if environ is None else environ
    bad = [k for k in CREDENTIAL_ENV if env.get(k) and PLACEHOLDER.match(env[k])]
    if bad:
        raise SlamError(f"{', '.join(bad)} hold placeholder values (e.g. CHANGE_ME from an example Secret): "
                        "create the real Secret first (docs/deploy.md); refusing to start")


if __name__ == "__main__":  # the k8s init containers' check: python -m slam.env check-credentials
    import sys

    from slam.errors import SlamError

    try:
        check_credentials()
    except SlamError as e:
        print(f"slam: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print("credentials: no placeholder values")
