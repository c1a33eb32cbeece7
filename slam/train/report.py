"""What a training run shows while it trains and when it ends (rank 0 only; other ranks do nothing).

    with TrainingLog(cfg, run_key, "slam", "", rank, n_steps, start_step) as tlog:
        tlog.start(params, languages, train_rows)          # params, config.yaml, the training dataset
        tlog.step(step, loss, lr, grad_norm, tokens, seconds)
        tlog.val(step, {"val_loss": 0.8, "val_accuracy": 0.25, "val_accuracy_de": 0.3})
        tlog.finish(final, state, manifest, delta_uri)      # tags + manifest, history, loss curve

MLflow (a background run: an outage buffers, never stops training; system metrics on) gets per step
`train/loss`, `train/lr`, `train/grad_norm`, `train/tokens_per_s`, `train/step_time_s`, and wherever
validation ran `val/loss`, `val/acc` and `val/acc/<lang>` (percent). Constants are params or tags,
never metrics. The console gets one progress line with ETA every few seconds (slam.progress).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

from slam.config import SlamConfig, dump_config
from slam.progress import progress


class TrainingLog:
    def __init__(self, cfg: SlamConfig, run_key: str, method: str, stage: str, rank: int, n_steps: int,
                 start_step: int) -> None:
        from slam.tracking import NullTracker, get_tracker

        self.cfg, self.run_key, self.rank = cfg, run_key, rank
        self.tracker = get_tracker(cfg.tracking) if rank == 0 else NullTracker()
        trial = cfg.tracking.parent.startswith("tune/")  # a Tune trial's run nests under its search
        self.tags = {"slam.step": "tune-trial" if trial else "train", "slam.method": method, "slam.stage": stage or None}
        self.bar = progress(n_steps, "train" + (f" {stage}" if stage else ""), "step", enabled=rank == 0,
                            initial=start_step)
        self._stack = contextlib.ExitStack()
        self.run: Any = None

    def __enter__(self) -> TrainingLog:
        self.run = self._stack.enter_context(self.tracker.run(
            self.run_key, key=self.run_key, tags=self.tags, background=True, system_metrics=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
        self._stack.__exit__(*exc)

    def start(self, params: dict[str, Any], languages: list[str], train_rows: list[dict]) -> None:
        if self.rank != 0:
            return
        from slam.tracking import dataset_input
        from slam.train.runs import data_fingerprint

        self.run.log_params(params)
        self.run.log_text(dump_config(self.cfg), "config.yaml")
        counts = Counter(r["lang"] for r in train_rows)
        tasks = Counter(r.get("task", "") for r in train_rows)
        self.run.log_dataset(dataset_input(
            "train", self.cfg.data.train, digest=data_fingerprint(self.cfg.data.train), context="training",
            languages=languages, counts={"rows": len(train_rows), **{f"rows_{k}": v for k, v in sorted(counts.items())},
                                         **{f"task_{k}": v for k, v in sorted(tasks.items()) if k}},
            columns=["id", "lang", "task", "instruction", "response"]))

    def step(self, step: int, loss: float, lr: float, grad_norm: float | None, tokens: float, seconds: float) -> None:
        if self.rank != 0:
            return
        m = {"train/loss": loss, "train/lr": lr, "train/step_time_s": seconds,
             "train/tokens_per_s": tokens / seconds if seconds > 0 else None, "train/grad_norm": grad_norm}
        self.run.log_metrics({k: v for k, v in m.items() if v is not None}, step=step)
        self.bar.update(1, loss=f"{loss:.3f}")

    def val(self, step: int, out: dict[str, float]) -> None:
        if self.rank != 0 or not out:
            return
        m = {}
        if "val_loss" in out:
            m["val/loss"] = out["val_loss"]
        for k, v in out.items():
            if k == "val_accuracy":
                m["val/acc"] = 100 * v
            elif k.startswith("val_accuracy_"):
                m[f"val/acc/{k[len('val_accuracy_'):]}"] = 100 * v
        self.run.log_metrics(m, step=step)
        self.bar.set_postfix(**{"val loss": f"{out['val_loss']:.3f}"} if "val_loss" in out else {})

    def finish(self, final: dict[str, Any], state: dict, manifest: dict, delta_uri: str) -> None:
        if self.rank != 0:
            return
        from slam.charts import loss_curve_png

        self.run.set_tags({"slam.delta_uri": delta_uri, "slam.attempts": final["attempts"],
                           "slam.resumed_from_step": final["resumed_from_step"],
                           "slam.quarantined": final["quarantined"], "slam.wall_time_s": round(final["wall_time"], 1)})
        self.run.log_dict(manifest, "delta/manifest.json")
        self.run.log_dict({"history": state["history"], "val": state["val"]}, "history.json")
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="slam-curve-") as d:
            f = Path(d) / "loss_curve.png"
            f.write_bytes(loss_curve_png(state["history"], state["val"], f"training {self.run_key}"))
            self.run.log_artifact(f)
