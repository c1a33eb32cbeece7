"""Run (or resume) an ablation study: probe once, then train and evaluate every unit, then report.

    from slam.study import StudyConfig, run_study
    summary = run_study(StudyConfig(seeds=3), out="runs/study")    # re-run the same call to resume

Layout under `out`: study.json (the config; other settings on the same dir are refused, except more or
fewer arms and seeds: that extends the study and reuses every finished unit), data/ (the
synthetic world unless cfg.data is given), probe/ (probe.json + plots), train/ (training runs, each
resumable from its checkpoints until its unit is finished, then only its delta is kept),
units/<arm>-<rep>.json (one per finished unit: per-question correctness and answer format, layers,
trainable parameters, training seconds), summary.json,
table.md, study.png (arms x languages), and mlflow/ (sqlite store unless cfg.mlflow_uri). A unit
is done when its JSON exists (written atomically, last): an interrupted study redoes at most the unit
it was in, and that unit's training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from slam import storage
from slam.errors import SlamError
from slam.study.plan import (
    FULL_ARMS,
    StudyConfig,
    Unit,
    check,
    describe_units,
    effective_full_lr,
    effective_long_steps,
    plan_units,
    to_json,
    train_overrides,
)

log = logging.getLogger(__name__)


def run_study(cfg: StudyConfig, out: str) -> dict[str, Any]:
    from slam.config import TrackingConfig
    from slam.study.report import summarize, write_report
    from slam.tracking import embedded_tracking_uri, get_tracker

    check(cfg)
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _claim(root, cfg)
    data = cfg.data or _synth(cfg, root / "data")
    report = _probe(cfg, data, root / "probe")
    units = plan_units(cfg, report)
    storage.write_json(str(root / "plan.json"), {"units": describe_units(units)})
    todo = [u.name for u in units if not (root / "units" / f"{u.name}.json").is_file()]
    log.info("study: %d of %d units to run%s", len(todo), len(units), f": {', '.join(todo)}" if todo else "")
    uri = cfg.mlflow_uri or embedded_tracking_uri(root / "mlflow")
    tracker = get_tracker(TrackingConfig(uri=uri, experiment=cfg.experiment))
    t0 = time.time()
    key = f"study/{root}"
    try:
        tracker.describe_experiment(STUDY_NOTE)
    except SlamError as e:  # a note is not worth stopping a study for (e.g. no right to tag a shared experiment)
        log.warning("study: could not describe the MLflow experiment: %s", e)
    with tracker.run(f"study-{root.name}", key=key, tags={"slam.step": "study"}) as parent:
        parent.log_params({"model": cfg.model, "langs": cfg.langs, "k": cfg.k,
                           "steps": cfg.steps, "lr": cfg.lr, "questions": cfg.questions,
                           "full_lr": effective_full_lr(cfg.full_lr, cfg.lr),
                           "probe_layers": ",".join(map(str, report["probe_selected_layers"])),
                           "probe_stable": report["stable"]})
        # tags, not params: an extended study changes them, and MLflow params are write-once
        parent.set_tags({"slam.study.arms": ",".join(cfg.arms), "slam.study.seeds": cfg.seeds,
                         "slam.study.long_steps": effective_long_steps(cfg.long_steps, cfg.steps)})
        for i, unit in enumerate(units):
            path = root / "units" / f"{unit.name}.json"
            if path.is_file():
                continue
            log.info("study: unit %d/%d %s (layers %s), %.0f s so far", i + 1, len(units), unit.name, unit.layers,
                     time.time() - t0)
            result = _run_unit(cfg, unit, data, root, uri, key)
            storage.write_json(str(path), result)
            _drop_checkpoints(root / "train", result.get("train_runs", []))
            with tracker.run(unit.name, key=f"study/{root}/{unit.name}", parent_run_id=parent.id,
                             tags={"slam.step": "study-arm", "slam.arm": unit.arm}) as run:
                run.log_params({"arm": unit.arm, "rep": unit.rep, "method": unit.method, "steps": unit.steps,
                                "lr": unit.lr,
                                "layers": _layers_param(unit),
                                "data_langs": unit.data_langs, "trainable": result["trainable"]})
                run.log_metrics(_unit_metrics(result))
        results = [json.loads((root / "units" / f"{u.name}.json").read_text()) for u in units]
        summary = summarize(cfg, report, results)
        summary["mlflow"] = _links(tracker, uri, [f"study/{root}/{u.name}" for u in units])
        write_report(summary, root)
        parent.log_metrics({k: v for k, v in summary["headline"].items() if isinstance(v, (int, float))})
        for f in ("summary.json", "table.md", "study.png"):
            parent.log_artifact(root / f, "study")
    log.info("study done: %s", root / "table.md")
    return summary


_EXTENDABLE = ("arms", "seeds")
"""Settings a study dir may change between runs: every unit is still trained and evaluated the same way."""


STUDY_NOTE = ("A SLAM ablation study (`slam study run`): one parent run per study with one nested run per arm "
              "and seed (tag `slam.arm`; training runs nest there too, tag `slam.step`=train). Compare arms on "
              "`<task>_acc_<lang>` (accuracy, 0-1), `<task>_format_<lang>` (share in the answer format), "
              "`train_seconds` and `trainable`; the parent holds table.md and study.png with paired bootstrap CIs.")


def _links(tracker: Any, uri: str, unit_keys: list[str]) -> dict[str, str]:
    """Where a browser finds the study in the MLflow UI: the runs table and a comparison of the arm runs."""
    from slam.mlflow_ui import compare_url, runs_url, ui_base

    base = ui_base(uri)
    if not base or not tracker.enabled:
        return {}
    ids = [r.info.run_id for r in map(tracker.find_run, unit_keys) if r is not None]
    return {"runs_url": runs_url(base, tracker.experiment_id),
            "compare_url": compare_url(base, tracker.experiment_id, ids)}


def _claim(root: Path, cfg: StudyConfig) -> None:
    """One config per study dir: resuming with other settings would mix arms trained differently. Arms and
    seeds may change (add `full` to a finished study, or a fourth seed); finished units are reused."""
    f = root / "study.json"
    if f.is_file():
        # a setting that an older slam did not write had its default there
        old = {**json.loads(to_json(StudyConfig())), **json.loads(f.read_text())}
        new = json.loads(to_json(cfg))
        differ = [k for k in sorted(old.keys() | new.keys())
                  if k not in _EXTENDABLE and _effective(old, k) != _effective(new, k)
                  and not _unused(k, old["arms"])]
        if differ:
            raise SlamError(f"{root} holds a study with other settings ({', '.join(differ)} differ in study.json; "
                            f"only {' and '.join(_EXTENDABLE)} may change); use another --out or the same settings")
        if old == new:
            return
        log.info("study: %s now has arms %s and %d seed(s) (was %s, %d); finished units are reused", root,
                 ",".join(cfg.arms), cfg.seeds, ",".join(old["arms"]), old["seeds"])
    storage.write_text(str(f), to_json(cfg) + "\n")


def _effective(settings: dict, key: str) -> Any:
    if key == "long_steps":
        return effective_long_steps(settings["long_steps"], settings["steps"])
    if key == "full_lr":
        return effective_full_lr(settings["full_lr"], settings["lr"])
    return settings.get(key)


def _unused(key: str, arms: list[str]) -> bool:
    """A setting no arm of the old study trained with: it may change (nothing trained differently yet)."""
    if key == "long_steps":
        return "bottom-k-long" not in arms
    if key == "full_lr":
        return not any(a in FULL_ARMS for a in arms)
    return False


def _synth(cfg: StudyConfig, out: Path) -> str:
    from slam.data.synth import synth

    if not (out / "_SUCCESS").is_file() and not (out / "test.jsonl").is_file():
        synth(str(out), langs=cfg.langs, n_train=cfg.synth_problems, n_val=max(16, cfg.synth_problems // 10),
              n_test=cfg.questions, n_probe=cfg.probe_questions, seed=0)
    return str(out)


def _probe(cfg: StudyConfig, data: str, out: Path) -> dict:
    from slam.config import ProbeConfig
    from slam.data.loaders import read_records
    from slam.models import load_model_and_tokenizer, resolve_model
    from slam.probe import run_probe
    from slam.probe.report import write_outputs

    if (out / "probe.json").is_file():
        return json.loads((out / "probe.json").read_text())
    src = storage.join(data, "probe.jsonl")
    if not storage.exists(src):
        raise SlamError(f"{data} has no probe.jsonl (parallel probe questions)")
    model, tok = load_model_and_tokenizer(resolve_model(cfg.model), device="cpu")
    pcfg = ProbeConfig(method=cfg.probe_method, langs=list(cfg.langs), top_k=cfg.k, selection=cfg.probe_selection,
                       max_questions=cfg.probe_questions)
    report = run_probe(model, tok, read_records(src), pcfg, progress=False)
    write_outputs(report, str(out))
    return report


def _run_unit(cfg: StudyConfig, unit: Unit, data: str, root: Path, tracking_uri: str, parent_key: str) -> dict:
    """Train one unit (none for base) and evaluate it on every task: the unit's JSON content."""

    from slam.config import load_config
    from slam.models import load_model_and_tokenizer, resolve_model

    trained: dict[str, Any] = {"trainable": 0, "trainable_fraction": 0.0, "train_seconds": 0.0, "delta": None}
    if unit.method != "none":
        from slam.train import train_local

        tcfg = load_config(None, train_overrides(cfg, unit, data, tracking_uri, parent_key))
        final = train_local(tcfg, str(root / "train"))
        runs = _stage_runs(final["run_name"], unit.method)
        trained = {"trainable": int(final["trainable"]), "trainable_fraction": float(final["trainable_fraction"]),
                   "train_seconds": _train_seconds(root / "train", runs),
                   "delta": final["delta_uri"], "val_loss": final.get("val_loss"), "train_runs": runs}
    if trained["delta"]:
        from slam.delta import load_model_with_delta

        model, tok = load_model_with_delta(cfg.model, trained["delta"], device="cpu")
    else:
        model, tok = load_model_and_tokenizer(resolve_model(cfg.model), device="cpu")
    tasks = {task: _evaluate(cfg, model, tok, task, data) for task in cfg.tasks}
    del model
    return {"arm": unit.arm, "rep": unit.rep, "method": unit.method, "layers": unit.layers, "lr": unit.lr,
            "data_langs": unit.data_langs, **trained, "tasks": tasks}


def _stage_runs(run_name: str, method: str) -> list[str]:
    """The training run dirs of a unit (both stages for two-stage)."""
    return [run_name.replace("-stage2", "-stage1"), run_name] if method == "two-stage" else [run_name]


def _layers_param(unit) -> str:
    """What the arm trains, as the MLflow UI's parallel-coordinates axis shows it: the untrained base is
    "none", not "all" (its layer list is empty like full fine-tuning's)."""
    if unit.method == "none":
        return "none"
    return ",".join(map(str, unit.layers or [])) or "all"


def _drop_checkpoints(train_root: Path, runs: list[str]) -> None:
    """A finished unit needs only its JSON and its delta, not its checkpoints (weights + optimizer state;
    training keeps the newest two, 3.2 GB for a full fine-tuning run of SmolLM2, which across a 25-unit
    study is more than a 2-core box's disk). Only the study's own run dirs under <out>/train are touched."""
    import shutil

    for name in runs:
        ckpt = train_root / name / "checkpoints"
        if ckpt.is_dir():
            shutil.rmtree(ckpt)
            log.info("study: dropped the finished run's checkpoints %s", ckpt)


def _train_seconds(train_root: Path, names: list[str]) -> float:
    """Optimizer-step seconds of the runs (both stages for two-stage; validation and loading excluded)."""
    total = 0.0
    for name in names:
        latest = json.loads((train_root / name / "checkpoints" / "latest.json").read_text())["uri"]
        state = json.loads((Path(latest) / "trainer_state.json").read_text())
        total += sum(h["step_time"] for h in state["history"])
    return round(total, 2)


def _evaluate(cfg: StudyConfig, model: Any, tok: Any, task: str, data: str) -> dict:
    from slam import tasks as task_mods
    from slam.evaluate import evaluate_model
    from slam.study.stats import in_format
    from slam.tasks import ANSWER_DONE
    from slam.tasks.sources import benchmark_source

    mod = task_mods.get(task)
    # the world's own test split; a benchmark from the data set's test_<task>.jsonl (`slam data build --test`)
    source = data if task == "synthetic" else benchmark_source(task, "", data)
    records = mod.load(source, langs=list(cfg.langs), limit=cfg.questions)
    rep = evaluate_model(model, tok, records, batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens,
                         progress=False, extract=mod.extract_answer, stop_pattern=ANSWER_DONE)
    out: dict[str, dict] = {}
    for s in rep["samples"]:
        d = out.setdefault(s["lang"], {"ids": [], "correct": [], "format": []})
        d["ids"].append(s["id"])
        d["correct"].append(int(s["correct"]))
        d["format"].append(int(in_format(s["completion"])))
    return {"per_lang": out, "seconds": rep["meta"]["seconds"], "examples": rep["samples"][:3]}


def _unit_metrics(result: dict) -> dict[str, float]:
    m: dict[str, float] = {"train_seconds": result["train_seconds"], "trainable": float(result["trainable"])}
    for task, t in result["tasks"].items():
        for lang, d in t["per_lang"].items():
            m[f"{task}_acc_{lang}"] = sum(d["correct"]) / len(d["correct"])
            m[f"{task}_format_{lang}"] = sum(d["format"]) / len(d["format"])
    return m
