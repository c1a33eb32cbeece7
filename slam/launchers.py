"""Where the train/tune steps run: one interface, two targets.

    launcher = get_launcher("local")                       # in-process Ray (kfp.local, `slam demo`, CI)
    launcher = get_launcher("kuberay", namespace="slam")   # a KubeRay RayJob per step (in a KFP pod)
    out = launcher.train(cfg, step="train", key="3f9c0a1b2c4d")   # {"delta_uri", "metrics", "run_name"}
    out = launcher.tune(cfg, step="tune", key="…")                # {"best": {"k", …}, "rows", "out_uri"}

Both targets read and write only by URI under cfg.storage.root, so the caller never cares which ran.
`key` is deterministic (slam.steps.step_key): the RayJob name derives from it, so re-running or
retrying a step re-attaches to the same RayJob instead of creating a second one.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

import yaml

from slam import storage
from slam.config import SlamConfig, to_dict
from slam.errors import SlamError

log = logging.getLogger(__name__)


class Launcher(Protocol):
    def train(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]: ...

    def tune(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]: ...


class LocalLauncher:
    """In-process Ray on this machine (or `ray_address`): slam.distributed.train.fit / .tune."""

    def __init__(self, ray_address: str | None = None) -> None:
        self.ray_address = ray_address

    def train(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        from slam.distributed.train import fit

        result = fit(cfg, num_workers=cfg.train.num_workers, storage=cfg.storage.root, ray_address=self.ray_address)
        return {"delta_uri": result.delta_uri, "metrics": dict(result.metrics), "run_name": result.run_name}

    def tune(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        from slam.distributed.tune import tune_search

        out = tune_search(cfg, storage_root=cfg.storage.root, ray_address=self.ray_address,
                          num_workers=cfg.train.num_workers, out_uri=tune_out_uri(cfg, step, key))
        return {"best": out.best, "rows": out.rows, "out_uri": out.out_uri}


class KubeRayTarget:
    """A RayJob per step via slam.launch (the config travels as a YAML next to the step's outputs)."""

    def __init__(self, namespace: str, *, api: Any = None, core_api: Any = None, shape: Any = None,
                 settings: Any = None, **launcher_kw: Any) -> None:
        self.namespace = namespace
        self.api, self.core_api, self.shape, self.settings = api, core_api, shape, settings
        self.launcher_kw = launcher_kw  # poll_s / clock / sleep for slam.launch.KubeRayLauncher

    def _apis(self) -> tuple[Any, Any]:
        if self.api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self.api, self.core_api = client.CustomObjectsApi(), client.CoreV1Api()
        return self.api, self.core_api

    def _run(self, cfg: SlamConfig, step: str, key: str, command: list[str], outputs: dict[str, str]) -> Any:
        from slam.launch import ClusterShape, KubeRayLauncher, build_rayjob, rayjob_name

        root = cfg.storage.root
        if not storage.is_s3(root):
            raise SlamError(f"launcher kuberay needs an s3:// storage prefix (pods share no disk), got {root}")
        shape = self.shape or ClusterShape(num_workers=cfg.train.num_workers,
                                           gpus_per_worker=1 if cfg.train.use_gpu else 0)
        body = build_rayjob(rayjob_name(key, step), command, shape=shape, settings=self.settings,
                            namespace=self.namespace, run_id=key, step=step, outputs=outputs)
        api, core = self._apis()
        result = KubeRayLauncher(api, self.namespace, core_api=core, **self.launcher_kw).run(body)
        log.info("RayJob %s %s in %.0f s (%s)", result.name, result.job_status, result.elapsed_s,
                 "re-attached" if result.reattached else "created")
        return result

    def _config_uri(self, cfg: SlamConfig, step: str, key: str) -> str:
        uri = storage.join(cfg.storage.root, step, key, "config.yaml")
        storage.write_text(uri, yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return uri

    def train(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        from slam.train import run_name_for  # where fit() puts the run: <storage>/<run name>/delta

        run_name = run_name_for(cfg)
        delta = storage.join(cfg.storage.root, run_name, "delta")
        self._run(cfg, step, key, ["slam", "train", "--config", self._config_uri(cfg, step, key),
                                   "--storage", cfg.storage.root], {"delta": delta})
        return {"delta_uri": delta, "metrics": {}, "run_name": run_name}

    def tune(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        out_uri = tune_out_uri(cfg, step, key)
        self._run(cfg, step, key, ["slam", "tune", "--config", self._config_uri(cfg, step, key),
                                   "--storage", cfg.storage.root, "--out", out_uri,
                                   "--num-workers", str(cfg.train.num_workers)],
                  {"best": storage.join(out_uri, "best.json")})
        best = storage.read_json(storage.join(out_uri, "best.json"))
        rows = storage.read_json(storage.join(out_uri, "results.json"))
        return {"best": best, "rows": rows if isinstance(rows, list) else rows.get("rows", []), "out_uri": out_uri}


def tune_out_uri(cfg: SlamConfig, step: str, key: str) -> str:
    return storage.join(cfg.storage.root, step, key, "search")


def get_launcher(name: str, **kw: Any) -> Launcher:
    if name == "local":
        return LocalLauncher(kw.get("ray_address") or os.environ.get("SLAM_RAY_ADDRESS") or None)
    if name == "kuberay":
        return KubeRayTarget(kw.pop("namespace", "") or os.environ.get("SLAM_K8S_NAMESPACE", "slam"), **kw)
    raise SlamError(f"unknown launcher {name!r}: local (in-process Ray) or kuberay (a RayJob per step)")
