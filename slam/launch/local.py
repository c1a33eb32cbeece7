"""The local launch target: Ray in this process (or on `ray_address`), via slam.distributed.

    LocalLauncher().train(cfg, step="train", key=key)   # -> {"delta_uri", "metrics", "run_name"}
"""

from __future__ import annotations

from typing import Any

from slam.config import SlamConfig


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
        from slam.launch import tune_out_uri

        out = tune_search(cfg, storage_root=cfg.storage.root, ray_address=self.ray_address,
                          num_workers=cfg.train.num_workers, out_uri=tune_out_uri(cfg, step, key))
        return {"best": out.best, "rows": out.rows, "out_uri": out.out_uri}
