"""Training without Ray: the same loop and stages in this process (`slam train --no-ray`, benches, debugging).

    from slam.train import train_local
    metrics = train_local(cfg, storage_root="runs/x")      # -> {"delta_uri": ..., "run_name": ..., ...}

`LocalSession` is what the loop talks to when no Ray is around; `slam.distributed.train.RaySession` is
its Ray twin (same three calls: device, checkpoint_dir, report).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from slam import storage
from slam.config import SlamConfig, to_dict
from slam.train.runs import check_inputs, resolve_layers, run_name_for, stage_run_name, stages_for

KEEP_CHECKPOINTS = 2
"""Checkpoints a run keeps, as the Ray path does (`CheckpointConfig(num_to_keep=2)`): the newest to resume
from, and the one before it in case the newest is the one that broke. Each holds weights + optimizer state
(~1.6 GB per full fine-tuning checkpoint of SmolLM2: fp32 weights and two Adam moments), so keeping every
one fills a disk."""

_STEP_DIR = re.compile(r"step-(\d{7})")


class LocalSession:
    """No Ray: checkpoints are published to `<run_dir>/checkpoints/step-N`; `latest.json` points at the newest;
    older ones beyond KEEP_CHECKPOINTS are deleted once the pointer has moved past them.

    Only rank 0 writes (the torch engine; DeepSpeed under torchrun would need shared local storage).
    """

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.reports: list[dict] = []

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[Path | None]:
        pointer = storage.join(self.run_dir, "checkpoints", "latest.json")
        if not storage.exists(pointer):
            yield None
            return
        with storage.local_copy(storage.read_json(pointer)["uri"], require_success=True) as d:
            yield Path(d)

    def report(self, metrics: dict, checkpoint: Path | None = None, rank: int = 0) -> None:
        self.reports.append(dict(metrics))
        if checkpoint is not None and rank == 0:
            uri = storage.join(self.run_dir, "checkpoints", f"step-{metrics['step']:07d}")
            storage.publish_dir(checkpoint, uri)
            storage.write_json(storage.join(self.run_dir, "checkpoints", "latest.json"),
                               {"uri": uri, "step": metrics["step"]})
            for old in self._checkpoint_steps()[:-KEEP_CHECKPOINTS]:
                storage.remove_dir(storage.join(self.run_dir, "checkpoints", f"step-{old:07d}"))

    def _checkpoint_steps(self) -> list[int]:
        root = storage.join(self.run_dir, "checkpoints")
        if storage.is_s3(root):
            names = {rel.split("/")[0] for rel, _ in storage.list_objects(root)}
        else:
            names = {p.name for p in Path(root).iterdir() if p.is_dir()}
        return sorted(int(m.group(1)) for n in names if (m := _STEP_DIR.fullmatch(n)))


def train_local(cfg: SlamConfig, storage_root: str | None = None) -> dict[str, Any]:
    """The stages of `cfg` (one, or two for two-stage) in this process; the last stage's final metrics."""
    from slam.train.loop import train_loop

    cfg = resolve_layers(cfg)
    check_inputs(cfg)
    root = storage.absolute(storage_root or cfg.storage.root)
    name = run_name_for(cfg)
    out: dict[str, Any] = {}
    init_delta = None
    for stage in stages_for(cfg):
        run_name = stage_run_name(name, stage)
        if init_delta:
            stage = {**stage, "init_delta": init_delta}
        out = train_loop({"cfg": to_dict(cfg), "run_dir": storage.join(root, run_name), "stage": stage})
        out["run_name"] = run_name
        init_delta = out["delta_uri"]
    return out
