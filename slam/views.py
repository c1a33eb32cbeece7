"""What the pipeline's steps show: their MLflow runs (nested under one run per pipeline run) and their
KFP visualizations (Markdown tables, figures, headline Metrics). slam.steps does the work; this module
only presents it.

    tc = step_tracking(mlflow_uri, "slam", pipeline_run_id="8f2c…", pipeline_run_name="slam-2026…")
    accuracy_metrics(report, "synthetic")      # {"acc/synthetic/de": 25.0, …, "acc/synthetic/avg_non_en": 12.5}
    data_summary_markdown(manifest)           # one row per language: train (cot, translate), val, test, probe

One metric naming scheme everywhere (MLflow, KFP Metrics, `slam runs compare`): `acc/<task>/<lang>` in
percent plus `acc/<task>/avg` and `acc/<task>/avg_non_en`; a SLAM evaluation also carries the base's
numbers as `base/<task>/…` and the difference in points as `delta/<task>/…`, so one run shows both.
"""

from __future__ import annotations

import logging
from typing import Any

from slam.config import TrackingConfig
from slam.errors import SlamError

log = logging.getLogger(__name__)

AVERAGES = (("average", "avg"), ("average_non_en", "avg_non_en"))


def step_tracking(mlflow_uri: str, experiment: str, pipeline_run_id: str = "", pipeline_run_name: str = "",
                  **extra: Any) -> TrackingConfig:
    """The tracking config of one step: its runs nest under the pipeline run's parent (created here with
    the KFP run's name when MLflow answers; otherwise by the first run that gets through)."""
    from slam.tracking import get_tracker

    tc = TrackingConfig(uri=mlflow_uri, experiment=experiment or "slam",
                        parent=f"pipeline/{pipeline_run_id}" if pipeline_run_id else "", **extra)
    if pipeline_run_id:
        try:
            get_tracker(tc).pipeline_run(pipeline_run_id, name=pipeline_run_name)
        except SlamError as e:  # MLflow down: the step goes on, its buffered run creates the parent later
            log.warning("MLflow: cannot reach the pipeline run yet (%s); the step goes on", e)
    return tc


def run_key(pipeline_run_id: str, step: str, fallback: str) -> str:
    """One run per step per pipeline run (a KFP retry re-attaches); without a pipeline, per inputs."""
    return f"{pipeline_run_id}/{step}" if pipeline_run_id else fallback


def accuracy_metrics(report: dict, task: str, prefix: str = "acc") -> dict[str, float]:
    """`<prefix>/<task>/<lang>` and the averages, in percent."""
    out = {f"{prefix}/{task}/{lang}": 100 * float(r["accuracy"]) for lang, r in report["per_lang"].items()}
    out.update({f"{prefix}/{task}/{short}": 100 * float(report[k]) for k, short in AVERAGES
                if report.get(k) is not None})
    return out


def delta_metrics(base: dict, tuned: dict, task: str) -> dict[str, float]:
    """`delta/<task>/<lang>`: tuned minus base, in points, where both were measured."""
    a, b = accuracy_metrics(base, task), accuracy_metrics(tuned, task)
    return {f"delta/{k[len('acc/'):]}": b[k] - a[k] for k in b if k in a}


def data_summary_markdown(uri: str, manifest: dict) -> str:
    """One row per language: training examples by task, validation examples, test and probe questions."""
    counts = manifest.get("counts") or {}
    records = manifest.get("records") or {}
    langs = sorted({lang for c in counts.values() for lang in c.get("by_lang", {})} |
                   {lang for r in records.values() for lang in r}, key=lambda x: (x != "en", x))
    if not langs:
        return f"# Training data\n\n`{uri}` (no per-language counts in its manifest)\n"

    def n(split: str, lang: str, task: str | None = None) -> int:
        by = (counts.get(split) or {}).get("by_lang", {}).get(lang, {})
        return int(by.get(task, 0)) if task else int(sum(by.values()))

    lines = ["| lang | train: cot | train: translate | val | test questions | probe questions |",
             "|---|---:|---:|---:|---:|---:|"]
    for lang in langs:
        lines.append(f"| {lang} | {n('train', lang, 'cot')} | {n('train', lang, 'translate')} | {n('val', lang)} | "
                     f"{(records.get('test') or {}).get(lang, 0)} | {(records.get('probe') or {}).get(lang, 0)} |")
    total = {s: (counts.get(s) or {}).get("total", 0) for s in ("train", "val")}
    q = int(manifest.get("quarantined") or 0)
    return (f"# Training data\n\n`{uri}`\n\n" + "\n".join(lines) +
            f"\n\n{total['train']} training and {total['val']} validation examples"
            f" from {(counts.get('train') or {}).get('problems', '?')} problems"
            + (f"; {q} rows quarantined" if q else "") + ".\n")


def data_counts(manifest: dict) -> dict[str, int]:
    """Row counts for the dataset's MLflow profile: per split and language."""
    out: dict[str, int] = {}
    for split, c in (manifest.get("counts") or {}).items():
        out[f"{split}_rows"] = int(c.get("total", 0))
        for lang, tasks in (c.get("by_lang") or {}).items():
            out[f"{split}_{lang}"] = int(sum(tasks.values()))
    return out


def history_markdown(history: list[dict], val: list[dict], run_name: str, delta_uri: str) -> str:
    last = history[-1] if history else {}
    vl = [v for v in val if v.get("val_loss") is not None]
    secs = sum(h.get("step_time", 0.0) for h in history)
    return (f"# Training: {run_name}\n\n| | |\n|---|---:|\n| steps | {last.get('step', 0)} |\n"
            f"| train loss (first → last) | {history[0]['train_loss']:.3f} → {last.get('train_loss', 0):.3f} |\n"
            + (f"| val loss (last) | {vl[-1]['val_loss']:.3f} |\n" if vl else "")
            + f"| training time | {secs:.0f} s |\n\nDelta: `{delta_uri}`\n" if history else
            f"# Training: {run_name}\n\nDelta: `{delta_uri}`\n")
