"""The one entrypoint every RayJob / Ray job runs: `python -m slam.launch.entry` (a constant string).

    SLAM_STEP_SPEC=s3://bucket/runs/train/3f9c0a1b2c4d/step.json python -m slam.launch.entry
    write_spec("s3://bucket/runs/train/3f9c0a1b2c4d/step.json", ["train", "--config", "s3://…/config.yaml"])

What to run comes from a step spec the launcher wrote to storage, {"version": 1, "argv": [...]}, and its URI
from the pod's environment (`SLAM_STEP_SPEC`, a plain container env var: no shell ever reads it). The argv
goes to the `slam` CLI in this process, so no user value is ever parsed by bash or by Ray's `shell=True`:
the entrypoint string KubeRay pastes into its submitter's `bash -ce` never changes, whatever the
pipeline parameters were. Only the steps that belong on a Ray cluster may run this way (STEPS).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from slam import storage
from slam.errors import SlamError
from slam.launch import validate

ENTRYPOINT = "python -m slam.launch.entry"
SPEC_ENV = "SLAM_STEP_SPEC"
SPEC_VERSION = 1
# `slam <step>` commands that may run as a RayJob (never `launch`, `pipeline`, `demo`: no recursion).
STEPS = ("train", "tune", "probe", "evaluate", "merge", "data", "register")
MAX_ARGS, MAX_ARG_LEN = 256, 4096

log = logging.getLogger(__name__)


def check_argv(argv: Any) -> list[str]:
    """A `slam <step> …` argv (without the leading "slam"), as the spec may carry it."""
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise SlamError("step spec: argv must be a non-empty list of strings (the `slam` command line)")
    if argv[0] not in STEPS:
        raise SlamError(f"step spec: `slam {argv[0][:40]}` may not run as a Ray job (allowed: {', '.join(STEPS)})")
    if len(argv) > MAX_ARGS or any(len(a) > MAX_ARG_LEN or "\0" in a for a in argv):
        raise SlamError(f"step spec: argv too long (at most {MAX_ARGS} arguments of {MAX_ARG_LEN} chars, no NUL): "
                        "put large values in the config file")
    return list(argv)


def write_spec(uri: str, argv: list[str]) -> str:
    """Write the step spec the entrypoint will run (an s3:// URI: pods share no disk with the launcher)."""
    validate.s3_uri(uri, "step spec URI")
    storage.write_json(uri, {"version": SPEC_VERSION, "argv": check_argv(argv)})
    return uri


def read_spec(uri: str) -> list[str]:
    doc = storage.read_json(uri)
    if not isinstance(doc, dict) or doc.get("version") != SPEC_VERSION:
        raise SlamError(f"{uri}: not a slam step spec (version {SPEC_VERSION})")
    return check_argv(doc.get("argv"))


def spec_uri_from_env(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    uri = env.get(SPEC_ENV, "")
    if not uri:
        raise SlamError(f"{SPEC_ENV} is not set: this entrypoint runs the step spec a slam launcher wrote")
    return validate.s3_uri(uri, SPEC_ENV)


def main() -> int:
    from slam import cli

    try:
        argv = read_spec(spec_uri_from_env())
    except SlamError as e:
        print(f"slam: error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"slam step from {os.environ[SPEC_ENV]}: slam {json.dumps(argv)[1:-1]}", flush=True)
    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
