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

from slam import storage as store
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
    """The training step's KFP summary: steps, first/last train loss, last val loss, training time."""
    head = f"# Training: {run_name}\n\n"
    if not history:
        return head + f"Delta: `{delta_uri}`\n"
    vl = [v for v in val if v.get("val_loss") is not None]
    rows = [("steps", str(history[-1]["step"])),
            ("train loss (first → last)", f"{history[0]['train_loss']:.3f} → {history[-1]['train_loss']:.3f}"),
            *([("val loss (last)", f"{vl[-1]['val_loss']:.3f}")] if vl else []),
            ("training time", f"{sum(h.get('step_time', 0.0) for h in history):.0f} s")]
    return head + "| | |\n|---|---:|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows) + f"\nDelta: `{delta_uri}`\n"


def champion_languages(tc: Any, name: str) -> list[str] | None:
    """The languages the champion of `name` was trained on (None: no champion yet)."""
    from slam.gate import TRAINED_TAG
    from slam.registry import _champion
    from slam.tracking import get_tracker

    champ = _champion(get_tracker(tc), name)
    if champ is None:
        return None
    return [x for x in dict(champ.tags).get(TRAINED_TAG, "").split(",") if x]


def track_data(tc: Any, key: str, uri: str, langs: list[str], manifest: dict, md: str, params: dict,
               new: list[str]) -> None:
    """The data step's run: its parameters, the train/val datasets (mlflow.log_input), manifest + summary."""
    from slam.tracking import STEP_TAG, dataset_input, get_tracker
    from slam.train.runs import data_fingerprint

    with get_tracker(tc).run("data", key=key, tags={STEP_TAG: "data", "slam.languages": ",".join(langs),
                                                    "slam.new_languages": ",".join(new) or None},
                             background=True) as run:
        run.log_params({**params, "languages": ",".join(langs), "data_uri": uri})
        if manifest:
            digest = data_fingerprint(uri)
            counts = data_counts(manifest)
            for split in ("train", "val"):
                run.log_dataset(dataset_input(split, uri, digest=digest, context=split, languages=langs,
                                              counts={k: v for k, v in counts.items() if k.startswith(split)},
                                              columns=["id", "lang", "task", "instruction", "response"]))
            run.log_dict(manifest, "data/manifest.json")
        run.log_text(md, "data/summary.md")


def baseline_report(baseline_uri: str, task: str) -> dict | None:
    """The base's report for `task`: baseline_uri is the base step's first eval.json; siblings per task."""
    if not baseline_uri:
        return None
    uri = baseline_uri if f"/{task}/" in baseline_uri else \
        store.join(baseline_uri.rsplit("/", 2)[0], task, "eval.json")
    return store.read_json(uri) if store.exists(uri) else None


def track_eval_task(run: Any, task: str, task_uri: str, report: dict, label: str, baseline_uri: str,
                    data_uri: str) -> None:
    """One task's numbers, files and questions (a dataset input) on the eval run; with a baseline also
    the base's numbers, the differences and the comparison chart."""
    import tempfile
    from pathlib import Path

    from slam.charts import compare_bars_png
    from slam.tracking import dataset_input

    run.log_metrics(accuracy_metrics(report, task))
    base = baseline_report(baseline_uri, task)
    if base is not None:
        run.log_metrics(accuracy_metrics(base, task, prefix="base"))
        run.log_metrics(delta_metrics(base, report, task))
        run.log_text(compare_markdown(base, report, label), f"{task}/base_vs_{label}.md")
        with tempfile.TemporaryDirectory(prefix="slam-cmp-") as d:
            f = Path(d) / f"base_vs_{label}.png"
            f.write_bytes(compare_bars_png(base, report, ("base", label)))
            run.log_artifact(f, task)
    with store.local_copy(task_uri) as d:
        for f in ("eval.json", "eval.png", "eval.md"):
            if (d / f).exists():
                run.log_artifact(d / f, task)
    src = store.join(data_uri, "test.jsonl") if task == "synthetic" and data_uri else report.get("meta", {}).get("data", "")
    if src:
        # the questions' own bytes when they are one file; a benchmark dir is identified by its location
        digest = store.fingerprint_bytes(store.read_bytes(src) if src.endswith(".jsonl") and store.exists(src)
                                         else str(src).encode())
        run.log_dataset(dataset_input(
            f"{task}-test", str(src), digest=digest, context="evaluation", languages=list(report["per_lang"]),
            counts={"questions": sum(r["total"] for r in report["per_lang"].values()),
                    **{f"questions_{k}": r["total"] for k, r in report["per_lang"].items()}},
            columns=["id", "lang", "question", "gold"]))


def compare_markdown(base: dict, report: dict, label: str) -> str:
    from slam.evaluate import compare_table

    return f"# base vs {label}\n\n{compare_table(base, report, ('base', label))}\n"


def training_run(tracker: Any, delta_uri: str) -> str:
    """MLflow id of the run that trained `delta_uri` (lineage tag), '' when unknown or MLflow is down."""
    if not delta_uri or not getattr(tracker, "enabled", False):
        return ""
    from slam.delta import read_manifest
    from slam.registry import training_run_id

    try:
        return training_run_id(tracker, read_manifest(delta_uri))
    except SlamError as e:
        log.warning("cannot look up the training run of %s: %s", delta_uri, e)
        return ""
