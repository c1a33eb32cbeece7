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
    # Local Ray started by slam (laptop, CI, kfp.local) runs without auth; clusters keep Ray's default.
    "RAY_AUTH_MODE": "disabled",
}

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
    return {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
