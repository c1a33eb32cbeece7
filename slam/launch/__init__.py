"""Where the train/tune steps run: one interface, two targets.

    launcher = get_launcher("local")                       # in-process Ray (kfp.local, `slam demo`, CI)
    launcher = get_launcher("kuberay", namespace="slam")   # a KubeRay RayJob per step (in a KFP pod)
    out = launcher.train(cfg, step="train", key="3f9c0a1b2c4d")   # {"delta_uri", "metrics", "run_name"}
    out = launcher.tune(cfg, step="tune", key="…")                # {"best": {"k", "layers", "lr", …}, "rows", "out_uri"}

| module | what |
|---|---|
| `local.py` | `LocalLauncher`: Ray in this process (slam.distributed.train.fit / .tune.tune_search) |
| `kuberay.py` | `KubeRayLauncher`: config to S3, a RayJob per step; `RayJobRunner`: get-or-create, wait, logs |
| `rayjob.py` | the RayJob object itself: deterministic name, cluster shape, pod templates, validation |
| `entry.py` | the constant RayJob entrypoint `python -m slam.launch.entry`: runs the step spec named by SLAM_STEP_SPEC |
| `kubeapi.py` | Kubernetes API access: credentials, request timeouts, bounded retries (slam.retry) |
| `validate.py` | strict checks of every URI/name that reaches a pod (no shell metacharacters, ever) |

Both targets read and write only by URI under cfg.storage.root, so the caller never cares which ran.
`key` is deterministic (slam.steps.step_key): the RayJob name derives from it, so re-running or
retrying a step re-attaches to the same RayJob instead of creating a second one.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from slam import storage
from slam.config import SlamConfig
from slam.errors import SlamError


class Launcher(Protocol):
    def train(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]: ...

    def tune(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]: ...


def tune_out_uri(cfg: SlamConfig, step: str, key: str) -> str:
    """Where a step's Tune search writes best.json / results.* / tune.png."""
    return storage.join(cfg.storage.root, step, key, "search")


def get_launcher(name: str, **kw: Any) -> Launcher:
    if name == "local":
        from slam.launch.local import LocalLauncher

        return LocalLauncher(kw.get("ray_address") or os.environ.get("SLAM_RAY_ADDRESS") or None)
    if name == "kuberay":
        from slam.launch.kuberay import KubeRayLauncher

        return KubeRayLauncher(kw.pop("namespace", "") or os.environ.get("SLAM_K8S_NAMESPACE", "slam"), **kw)
    raise SlamError(f"unknown launcher {name!r}: local (in-process Ray) or kuberay (a RayJob per step)")
