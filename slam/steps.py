"""The pipeline's steps as plain functions on URIs: what each KFP component in components/ calls once.

    from slam import steps
    out = steps.prepare_data(storage="runs/demo", languages="en,de,zh", synth_problems=200)
    out = steps.probe_layers(storage="runs/demo", base_model="pypi:smollm2", data_uri=out["uri"], ...)

Every step writes its outputs under `<storage>/<step>/<key>/` (a local dir or s3://), where `key` is a
fingerprint of the step's inputs: re-running with the same parameters lands in the same place, re-attaches
to the same MLflow runs (tracking find-or-create), the same RayJob names and the same model version
(registry dedup by delta fingerprint). A step returns a dict:

    {"uri": <main output URI>, "outputs": {...small values...}, "metrics": {name: float},
     "markdown": str, "figures": {title: png bytes}}

which components/ turns into KFP artifacts. Decisions flow forward, made once: the tune step decides the
layers (and the lr when it searched lr) and writes them to tune.json; the train step trains exactly
those. A preset's explicit `train.layers` wins over the probe, which then only reports.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from slam import storage as store  # (the steps take a `storage` root parameter)
from slam.config import SlamConfig, split_list, split_overrides
from slam.errors import SlamError

log = logging.getLogger(__name__)

SYNTH_TEST, SYNTH_PROBE = 100, 64  # held-out questions per language for evaluation / probing


def step_key(step: str, **inputs: Any) -> str:
    """Deterministic id of one step's work: same inputs, same key, same output location. Inputs that are
    data (datasets, probe/tune reports, deltas) go in by content (`store.content_digest`), not by URI: data
    rebuilt at the same URI is new input, never a reuse of stale results."""
    blob = json.dumps({"step": step, **inputs}, sort_keys=True, default=str).encode()
    return store.fingerprint_bytes(blob)[:12]


def step_uri(root: str, step: str, key: str) -> str:
    return store.join(store.absolute(root), step, key)


def timed(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Environment defaults, progress logging, and the step's own wall time in outputs["seconds"]."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict:
        from slam.env import apply_defaults, check_credentials
        from slam.redact import install_log_filter

        if not logging.getLogger().handlers:  # a KFP task process: make the step's progress visible
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                                datefmt="%H:%M:%S")
        install_log_filter()
        apply_defaults()
        check_credentials()
        log.info("step %s starting", fn.__name__)
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            _mark_pipeline_failed(kwargs)
            raise
        result.setdefault("outputs", {})["seconds"] = round(time.perf_counter() - t0, 2)
        log.info("step %s done in %.1f s -> %s", fn.__name__, result["outputs"]["seconds"], result.get("uri"))
        return result

    return wrapper


def _mark_pipeline_failed(kwargs: dict) -> None:
    """A failing step marks its pipeline's MLflow run FAILED (best effort; a KFP retry reopens it)."""
    if not (kwargs.get("mlflow_uri") and kwargs.get("pipeline_run_id")):
        return
    from slam.config import TrackingConfig
    from slam.tracking import get_tracker

    try:
        t = get_tracker(TrackingConfig(uri=kwargs["mlflow_uri"], experiment=kwargs.get("experiment") or "slam",
                                       retries=1))
        t.set_pipeline_status(t.pipeline_run(kwargs["pipeline_run_id"]), "FAILED")
    except Exception:  # noqa: BLE001 - the step's own error is what matters
        log.debug("could not mark the pipeline run failed", exc_info=True)


def _overrides(value: str | list[str] | None) -> list[str]:
    """The steps' config overrides: a list of `section.key=value` (a KFP list parameter), or one string of
    them separated by newlines (what older compiled pipelines pass)."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return split_overrides(value or "")


def _read_json_or_empty(uri: str) -> dict:
    try:
        return store.read_json(uri)
    except SlamError:
        return {}


def _train_config(*, root: str, base_model: str, data_uri: str, preset: str, overrides: str | list[str],
                  tracking: Any, train: dict[str, Any]) -> SlamConfig:
    """The preset YAML (or the defaults) + the step's overrides, then the pipeline's own values on top
    (tracking: the step's, nested under the pipeline run). The model stays a URI: every process that
    loads it resolves it (slam.models.resolve_model)."""
    from slam.config import load_config, to_dict

    cfg = load_config(preset or None, overrides=_overrides(overrides))
    return cfg.replace(model={"path": base_model}, data={"train": data_uri}, train=train, storage={"root": root},
                       tracking={k: v for k, v in to_dict(tracking).items() if k in ("uri", "experiment", "parent")})


# --------------------------------------------------------------------------------------------------
# The steps


@timed
def prepare_data(*, storage: str, languages: str, train_data: str = "", synth_problems: int = 200,
                 synth_seed: int = 0, languages_uri: str = "", registry_name: str = "slam", mlflow_uri: str = "",
                 experiment: str = "slam", pipeline_run_id: str = "", pipeline_run_name: str = "") -> dict:
    """Decide the training data and its languages, once, for every later step:
    - languages_uri (one folder per language, slam.data.langdirs): the folders found there; nothing to do
      (outputs.changed False) unless a language appeared that the current champion was not trained on;
    - train_data: a built dataset used as is; otherwise: synthesize the multilingual world under storage."""
    from slam import views

    tc = views.step_tracking(mlflow_uri, experiment, pipeline_run_id, pipeline_run_name)
    langs, changed, new, note = split_list(languages, "languages"), True, [], ""
    if languages_uri:
        from slam.data import langdirs

        langs = langdirs.list_languages(languages_uri)
        if not langs:
            raise SlamError(f"languages_uri {languages_uri} has no <code>/train.jsonl folders")
        trained = views.champion_languages(tc, registry_name) if mlflow_uri else None
        new = [x for x in langs if x != "en" and x not in (trained or [])]
        changed = trained is None or bool(new)
        note = (f"champion of `{registry_name}` trained on {', '.join(trained) or '—'}; " if trained is not None else
                f"no champion of `{registry_name}` yet; ") + (f"new: {', '.join(new)}" if new else "nothing new")
        uri = step_uri(storage, "data", step_key("data", root=languages_uri, langs=langs,
                                                 files=langdirs.fingerprint(languages_uri, langs), seed=synth_seed))
        if changed and not store.exists(store.join(uri, store.SUCCESS)):
            langdirs.build_from_languages(languages_uri, uri, langs, seed=synth_seed)
    elif train_data:
        if not store.exists(store.join(train_data, "train.jsonl")):
            raise SlamError(f"train_data {train_data} has no train.jsonl (a `slam data build` output dir)")
        uri = train_data
    else:
        from slam.data.synth import synth

        if synth_problems <= 0:
            raise SlamError(f"synth_problems must be > 0, got {synth_problems}")
        sizes = {"n_train": synth_problems, "n_val": max(16, synth_problems // 10), "n_test": SYNTH_TEST,
                 "n_probe": SYNTH_PROBE}
        uri = step_uri(storage, "data", step_key("data", langs=langs, seed=synth_seed, **sizes))
        if store.is_published(uri):
            log.info("data: reusing %s", uri)
        else:
            synth(uri, langs=langs, seed=synth_seed, **sizes)
    manifest = _read_json_or_empty(store.join(uri, "manifest.json")) if changed else {}
    from slam.data.build import trained_langs

    data_langs = trained_langs(manifest)  # None: every language trains
    zero = [x for x in langs if data_langs is not None and x not in data_langs]
    notes = list(manifest.get("notes", [])) + ([f"zero-shot (evaluated, not trained): {', '.join(zero)}"] if zero else [])
    for n in notes:
        log.info("data: %s", n)
    md = ((f"**{note}**\n\n" if note else "") + "".join(f"- {n}\n" for n in notes) + ("\n" if notes else "")
          + (views.data_summary_markdown(uri, manifest) if changed else "Nothing to train: the pipeline stops here.\n"))
    views.track_data(tc, views.run_key(pipeline_run_id, "data", f"data/{uri}"), uri, langs, manifest, md,
                {"languages_uri": languages_uri, "train_data": train_data, "synth_problems": synth_problems,
                 "synth_seed": synth_seed}, new)
    return {"uri": uri, "outputs": {"languages": ",".join(langs), "changed": changed, "new_languages": ",".join(new)},
            "metrics": {f"rows/{k}": v for k, v in views.data_counts(manifest).items()}, "markdown": md}




@timed
def probe_layers(*, storage: str, base_model: str, data_uri: str, languages: str, method: str = "msd",
                 top_k: int = 6, selection: str = "bottom-k", max_questions: int = 32, mlflow_uri: str = "",
                 experiment: str = "slam", pipeline_run_id: str = "", pipeline_run_name: str = "") -> dict:
    """Probe the base model with the parallel probe questions: probe.json, heatmap, scores, summary."""
    from slam import views
    from slam.config import ProbeConfig
    from slam.data.loaders import read_records
    from slam.models import load_model_and_tokenizer, resolve_model
    from slam.probe import run_probe
    from slam.probe.report import render_markdown, write_outputs
    from slam.tracking import STEP_TAG, get_tracker

    langs = split_list(languages, "languages")
    src = store.join(data_uri, "probe.jsonl")
    if not store.exists(src):
        raise SlamError(f"{data_uri} has no probe.jsonl (parallel probe questions: `slam data synth` writes one)")
    pcfg = ProbeConfig(method=method, langs=langs, top_k=top_k, selection=selection, max_questions=max_questions)
    key = step_key("probe", model=base_model, data=store.content_digest(data_uri), langs=langs, method=method,
                   top_k=top_k, selection=selection, n=max_questions)
    out = step_uri(storage, "probe", key)
    report_uri = store.join(out, "probe.json")
    tc = views.step_tracking(mlflow_uri, experiment, pipeline_run_id, pipeline_run_name)
    with get_tracker(tc).run("probe", key=views.run_key(pipeline_run_id, "probe", f"probe/{key}"),
                             tags={STEP_TAG: "probe"}, background=True, system_metrics=True) as run:
        run.log_params({"base_model": base_model, "method": method, "top_k": top_k, "selection": selection,
                        "languages": ",".join(langs), "max_questions": max_questions, "data_uri": data_uri})
        if store.is_published(out):
            report = store.read_json(report_uri)
            log.info("probe: reusing %s", report_uri)
        else:
            model, tok = load_model_and_tokenizer(resolve_model(base_model), device="cpu")
            report = run_probe(model, tok, read_records(src), pcfg)
            write_outputs(report, out)
        layers = report["selected_layers"]
        for i, score in enumerate(report["scores"]):  # a curve over layers: x = layer index
            run.log_metrics({"probe/score": float(score)}, step=i)
        run.set_tags({"slam.selected_layers": ",".join(map(str, layers)), "slam.probe_uri": report_uri})
        with store.local_copy(out) as d:
            for f in ("probe.json", "heatmap.png", "scores.png", "summary.md"):
                if (d / f).exists():
                    run.log_artifact(d / f, "probe")
    metrics = {"probe/k": float(len(layers)), **{f"probe/score/layer_{i:02d}": float(x)
                                                 for i, x in enumerate(report["scores"])}}
    stab = report.get("stability") or {}  # the probe's stability, as numbers next to the scores
    if (stab.get("split_half_tau") or {}).get("mean") is not None:
        metrics.update({"probe/split_half_tau": stab["split_half_tau"]["mean"], "probe/stable": float(report["stable"]),
                        "probe/split_half_overlap": stab["split_half_overlap"]["mean"]})
    return {"uri": report_uri, "outputs": {"selected_layers": ",".join(map(str, layers))}, "metrics": metrics,
            "markdown": render_markdown(report) + f"\nReport: `{report_uri}`\n",
            "figures": {f"Probe ({report['method']}): layer x language, selected layers marked *":
                        store.read_bytes(store.join(out, "heatmap.png")),
                        "Layer scores": store.read_bytes(store.join(out, "scores.png"))}}


@timed
def tune_layer_count(*, storage: str, base_model: str, data_uri: str, probe_uri: str, k_grid: str,
                     preset: str = "", overrides: str | list[str] = "", launcher: str = "local", mlflow_uri: str = "",
                     experiment: str = "slam", pipeline_run_id: str = "", pipeline_run_name: str = "") -> dict:
    """Decide the layers to train (and the lr when tune.lr_grid searches it): Ray Tune over k with a reduced
    budget, or no search when the preset fixes train.layers or there is one candidate. -> tune.json"""
    from slam.config import parse_int_list
    from slam.launch import get_launcher

    ks = parse_int_list(k_grid, "k_grid")
    if not ks or any(k <= 0 for k in ks):
        raise SlamError(f"k_grid must list positive layer counts like 2,4,6; got {k_grid!r}")
    from slam import views

    key = step_key("tune", model=base_model, data=store.content_digest(data_uri), probe=store.content_digest(probe_uri),
                   k=ks, preset=preset, overrides=_overrides(overrides))
    root = store.absolute(storage)
    cfg = _train_config(root=root, base_model=base_model, data_uri=data_uri, preset=preset, overrides=overrides,
                        tracking=views.step_tracking(mlflow_uri, experiment, pipeline_run_id, pipeline_run_name),
                        train={"probe": probe_uri})
    cfg = cfg.replace(tune={"k_grid": ks, "name": cfg.tune.name or f"tune-{key}"})
    result = _no_search(cfg, ks)
    if result is None:
        result = get_launcher(launcher).tune(cfg, step="tune", key=key)
        tc = cfg.tune
        result["best"]["searched"] = ["k"] + (["lr"] if len(set(tc.lr_grid)) > 1 else []) + \
            (["selection"] if len(set(tc.selections)) > 1 else [])
    best = result["best"]
    results_uri = store.write_json(store.join(step_uri(storage, "tune", key), "tune.json"), result)
    return {"uri": results_uri, "outputs": {"best_k": int(best["k"]), "layers": ",".join(map(str, best["layers"]))},
            "metrics": _tune_metrics(result), "markdown": _tune_markdown(result, results_uri)}


def _no_search(cfg: SlamConfig, ks: list[int]) -> dict | None:
    """The decision when there is nothing to search (None: run the search)."""
    if cfg.train.layers is not None:
        layers = list(cfg.train.layers)
        note = "train.layers is set by the preset/overrides: it wins over the probe, no search"
        return {"best": {"k": len(layers), "layers": layers, "lr": cfg.train.lr, "selection": "given",
                         "metric": "", "value": None, "searched": []}, "rows": [], "note": note}
    if len(ks) == 1 and len(set(cfg.tune.lr_grid)) <= 1 and len(set(cfg.tune.selections)) <= 1:
        from slam.probe import select_layers
        from slam.probe.select import read_report, tune_selections

        report = read_report(cfg.train.probe)
        selection = tune_selections(cfg.tune.selections, report)[0]
        layers = select_layers(report, ks[0], selection)
        return {"best": {"k": ks[0], "layers": layers, "lr": cfg.train.lr, "selection": selection, "metric": "",
                         "value": None, "searched": []}, "rows": [], "note": "one candidate, no search"}
    return None


def _tune_metrics(result: dict) -> dict[str, float]:
    best = result["best"]
    metric = best.get("metric") or "val_loss"
    metrics: dict[str, float] = {"best_k": float(best["k"])}
    for r in result["rows"]:
        if isinstance(r.get(metric), (int, float)):
            metrics[f"{metric}_k{r.get('k')}"] = float(r[metric])
    return metrics


def k_decision(result: dict) -> str:
    """How the tune step's tune.json decided k, in one line (the step's report, the demo's summary)."""
    best = result["best"]
    if result.get("note"):
        return f"k = {best['k']}: {result['note']}"
    ks = sorted({r.get("k") for r in result["rows"]})
    if best.get("tied"):
        return (f"k = {best['k']}: every trial of k in {ks} scored {best['metric']} = {best['value']:.3g}, no signal "
                "(the smallest k kept; more tune.max_steps let trials differ)")
    return f"k = {best['k']}: Ray Tune's best of k in {ks} by {best['metric']} ({best['value']:.3g})"


def _tune_markdown(result: dict, results_uri: str) -> str:
    best = result["best"]
    metric = best.get("metric") or "val_loss"
    rows = ["| k | selection | lr | " + metric + " | status | |", "|---:|:--|---:|---:|:--|:--|"]
    for r in sorted(result["rows"], key=lambda r: (r.get("k", 0), str(r.get("selection")), r.get("lr") or 0)):
        v = r.get(metric)
        shown = f"{v:.4f}" if isinstance(v, (int, float)) else "-"
        rows.append(f"| {r.get('k')} | {r.get('selection')} | {r.get('lr')} | {shown} | {r.get('status')} | "
                    f"{'best' if r.get('trial') == best.get('trial') else ''} |")
    title = "Layer-count search (Ray Tune)" if result["rows"] else "Layer count"
    return (f"# {title}\n\nLayers to train: **{', '.join(map(str, best['layers']))}** "
            f"— {k_decision(result)}\n\n" + ("\n".join(rows) if result["rows"] else "") + f"\n\n`{results_uri}`\n")


@timed
def train_slam(*, storage: str, base_model: str, data_uri: str, probe_uri: str, tune_uri: str, preset: str = "",
               overrides: str | list[str] = "", launcher: str = "local", mlflow_uri: str = "", experiment: str = "slam",
               pipeline_run_id: str = "", pipeline_run_name: str = "") -> dict:
    """Fine-tune the FFN up/down of the layers the tune step decided (its tune.json); the delta lands
    under storage. The training run logs live to MLflow, nested under the pipeline run."""
    from slam import views
    from slam.charts import loss_curve_png
    from slam.launch import get_launcher
    from slam.train.loop import HISTORY

    best = store.read_json(tune_uri)["best"]
    decided: dict[str, Any] = {"probe": probe_uri, "layers": list(best["layers"])}
    if "lr" in best.get("searched", []):
        decided["lr"] = float(best["lr"])
    root = store.absolute(storage)
    tc = views.step_tracking(mlflow_uri, experiment, pipeline_run_id, pipeline_run_name)
    cfg = _train_config(root=root, base_model=base_model, data_uri=data_uri, preset=preset, overrides=overrides,
                        tracking=tc, train=decided)
    key = step_key("train", model=base_model, data=store.content_digest(data_uri), probe=store.content_digest(probe_uri),
                   decided=decided, preset=preset, overrides=_overrides(overrides))
    result = get_launcher(launcher).train(cfg, step="train", key=key)
    delta_uri, run_name = result["delta_uri"], result.get("run_name", "")
    run_dir = delta_uri.rstrip("/").rsplit("/", 1)[0]
    hist = _read_json_or_empty(store.join(run_dir, HISTORY))
    history, val = hist.get("history") or [], hist.get("val") or []
    m = result.get("metrics") or {}
    metrics = {"train/loss": m.get("train_loss"), "val/loss": m.get("val_loss"), "train/steps": m.get("step"),
               "train/seconds": m.get("wall_time")}
    figures = {f"Training loss ({run_name})": loss_curve_png(history, val, f"training {run_name}")} if history else {}
    return {"uri": delta_uri, "outputs": {"layers": ",".join(map(str, decided["layers"])), "lr": cfg.train.lr,
                                         "run_name": run_name},
            "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
            "markdown": views.history_markdown(history, val, run_name, delta_uri), "figures": figures}


@timed
def evaluate(*, storage: str, base_model: str, data_uri: str, delta_uri: str = "", label: str = "",
             tasks: str = "synthetic", languages: str = "", limit: int = 0, max_new_tokens: int = 0,
             baseline_uri: str = "", benchmarks: str = "", mlflow_uri: str = "", experiment: str = "slam",
             pipeline_run_id: str = "", pipeline_run_name: str = "") -> dict:
    """Per-language accuracy of base (no delta) or base + delta on each task; eval.json/md/png per task.
    MGSM/MSVAMP come from `benchmarks` (a root or task=URI pairs, slam.tasks.sources), else from the
    data set's test split; problems the data set held out for probing are never evaluated on; languages
    the data set does not train are marked zero-shot. With `baseline_uri` (the base's eval.json, same
    questions), the run also carries the base's numbers and the differences, and the figures compare the two."""
    from slam import evaluate as ev
    from slam import views
    from slam.charts import compare_bars_png
    from slam.data.build import trained_langs
    from slam.tracking import STEP_TAG, TRAIN_RUN_TAG, get_tracker

    langs = split_list(languages, "languages")
    task_names = split_list(tasks, "tasks")
    if not task_names:
        raise SlamError("evaluate: no tasks given (synthetic, mgsm, msvamp)")
    label = label or ("slam" if delta_uri else "base")
    manifest = _read_json_or_empty(store.join(data_uri, "manifest.json")) if data_uri else {}
    held_out = (manifest.get("probe") or {}).get("held_out") or {}
    plan = {task: _eval_plan(task, benchmarks, data_uri, langs) for task in task_names}  # bad sources fail here
    key = step_key("eval", model=base_model, delta=store.content_digest(delta_uri) if delta_uri else "",
                   data=store.content_digest(data_uri) if data_uri else "", tasks=task_names, langs=langs,
                   limit=limit, max_new_tokens=max_new_tokens, sources={t: p[0] for t, p in plan.items()})
    out = step_uri(storage, "eval", f"{label}-{key}")
    tc = views.step_tracking(mlflow_uri, experiment, pipeline_run_id, pipeline_run_name)
    tracker = get_tracker(tc)
    tags = {STEP_TAG: "eval", "slam.label": label, TRAIN_RUN_TAG: views.training_run(tracker, delta_uri) or None}
    model = tok = None
    reports: dict[str, tuple[str, dict]] = {}
    with tracker.run(f"eval-{label}", key=views.run_key(pipeline_run_id, f"eval-{label}", f"eval/{label}/{key}"),
                     tags=tags, background=True, system_metrics=True) as run:
        run.log_params({"base_model": base_model, "delta": delta_uri or "(none)", "tasks": ",".join(task_names),
                        "languages": ",".join(langs), "limit": limit, "max_new_tokens": max_new_tokens or "task default",
                        "decoding": "greedy", "prompt": "alpaca", "answer": "last number", "data_uri": data_uri,
                        "benchmarks": benchmarks or "(the data set's test split)"})
        for task, (source, task_langs, missing) in plan.items():
            task_uri = store.join(out, task)
            json_uri = store.join(task_uri, "eval.json")
            if store.exists(json_uri):  # eval.json is written last: present = complete
                reports[task] = (json_uri, store.read_json(json_uri))
            else:
                if model is None:
                    model, tok = _load_for_eval(base_model, delta_uri)
                report = ev.evaluate_task(model, tok, task, source, langs=task_langs or None, limit=limit or None,
                                          exclude=held_out.get(task, ()), max_new_tokens=max_new_tokens)
                report["meta"].update({"label": label, "base_model": base_model, "delta": delta_uri,
                                       "not_in_benchmark": missing})
                ev.mark_zero_shot(report, trained_langs(manifest))
                ev.write_report(report, task_uri, title=f"{label}: {task} per-language accuracy (%)")
                reports[task] = (json_uri, report)
            views.track_eval_task(run, task, task_uri, reports[task][1], label, baseline_uri, data_uri)
    metrics: dict[str, float] = {}
    md = [f"# Evaluation: {label}\n"]
    figures = {}
    for task, (json_uri, report) in reports.items():
        base = views.baseline_report(baseline_uri, task)
        metrics.update(views.accuracy_metrics(report, task))
        notes = [f"Zero-shot (not in the training data): {', '.join(report['zero_shot'])}."] if report.get("zero_shot") else []
        if report["meta"].get("not_in_benchmark"):
            notes.append(f"Not in {task}: {', '.join(report['meta']['not_in_benchmark'])}.")
        notes_md = "".join(n + "\n" for n in notes)
        if base is not None:
            metrics.update(views.delta_metrics(base, report, task))
            md.append(f"## {task}: base vs {label}\n\n{ev.compare_table(base, report, ('base', label))}\n\n"
                      f"{notes_md}\n`{json_uri}`\n")
            figures[f"{task}: base vs {label} per language"] = compare_bars_png(base, report, ("base", label))
        else:
            md.append(f"## {task}\n\n{ev.markdown_table(report)}\n\n{notes_md}\n`{json_uri}`\n")
        figures[f"{label}: {task}"] = store.read_bytes(store.join(store.join(out, task), "eval.png"))
    first_uri, first = next(iter(reports.values()))
    return {"uri": first_uri, "outputs": {"average": float(first.get("average") or 0.0), "label": label},
            "metrics": metrics, "markdown": "\n".join(md), "figures": figures}


def _eval_plan(task: str, benchmarks: str, data_uri: str, langs: list[str]) -> tuple[str, list[str], list[str]]:
    """(source, languages to evaluate, requested languages the benchmark does not have)."""
    from slam import tasks as T
    from slam.tasks.sources import available_langs, benchmark_source

    if task == "synthetic":
        return data_uri, langs, []
    source = benchmark_source(task, benchmarks, data_uri)
    if not langs:
        return source, [], []
    have = set(available_langs(T.get(task), source))
    keep, missing = [x for x in langs if x in have], [x for x in langs if x not in have]
    if not keep:
        raise SlamError(f"{task} at {source} has none of the languages {', '.join(langs)} "
                        f"(it has: {', '.join(sorted(have)) or 'none'})")
    if missing:
        log.warning("%s at %s has no %s: evaluating %s", task, source, ", ".join(missing), ", ".join(keep))
    return source, keep, missing


def _load_for_eval(base_model: str, delta_uri: str):
    import torch

    from slam.models import load_model_and_tokenizer, resolve_model

    base = resolve_model(base_model)
    if delta_uri:
        from slam.delta import load_model_with_delta

        return load_model_with_delta(base, delta_uri, device=None if torch.cuda.is_available() else "cpu")
    return load_model_and_tokenizer(base)


@timed
def register_model(*, base_model: str, delta_uri: str, probe_uri: str, slam_eval_uri: str, base_eval_uri: str,
                   registry_name: str, mlflow_uri: str, experiment: str = "slam", gate_margin: float = 1.0,
                   pipeline_run_id: str = "", pipeline_run_name: str = "") -> dict:
    """Register the delta (same delta twice = one version) and gate `champion` per language; the model
    card compares base vs SLAM per language and shows the gate's table. Ends the pipeline's MLflow run
    with its headline numbers."""
    from slam import registry, views
    from slam.delta import read_manifest
    from slam.evaluate import check_report, compare_table
    from slam.tracking import MlflowTracker, get_tracker

    tc = views.step_tracking(mlflow_uri, experiment, pipeline_run_id, pipeline_run_name, registry_name=registry_name,
                             gate_margin=gate_margin)
    result = registry.register_delta(tc, delta_uri, slam_eval_uri, base_eval_uri=base_eval_uri, name=registry_name,
                                     base=base_model,
                                     run_key=views.run_key(pipeline_run_id, "register", ""))
    base_report, slam_report = (check_report(store.read_json(u), u) for u in (base_eval_uri, slam_eval_uri))
    manifest = read_manifest(delta_uri)
    task = (slam_report.get("meta") or {}).get("task", "synthetic")
    headline = {**{f"base/{k[4:]}": v for k, v in views.accuracy_metrics(base_report, task).items()},
                **views.accuracy_metrics(slam_report, task), **views.delta_metrics(base_report, slam_report, task)}
    tracker = get_tracker(tc)
    if pipeline_run_id and isinstance(tracker, MlflowTracker):
        parent = tracker.pipeline_run(pipeline_run_id, pipeline_run_name)
        from slam.tracking import MlflowRun

        summary = MlflowRun(tracker, parent, "pipeline")
        summary.log_metrics(headline)
        summary.set_tags({"slam.registered_model": f"{result.name}/{result.version}", "slam.alias": result.alias,
                          "slam.gate": result.reason})
        tracker.set_pipeline_status(parent, "FINISHED")
    md = (f"# {result.name} version {result.version} ({result.alias})\n\n{result.reason}\n\n"
          + (f"## Gate, per language\n\n{result.table}\n\n" if result.table else "")
          + f"## Base vs SLAM ({task})\n\n{compare_table(base_report, slam_report, ('base', 'SLAM'))}\n\n"
          f"Tuned layers: {manifest.get('layers')} ({manifest.get('fraction', 0):.2%} of the parameters; "
          f"probe `{probe_uri}`)  \nDelta: `{delta_uri}`\n")
    keep = ("acc/", "delta/")
    return {"uri": result.model_uri, "outputs": {"version": result.version, "alias": result.alias,
                                                 "created": result.created, "run_id": result.run_id},
            "metrics": {k: v for k, v in headline.items() if k.startswith(keep) and "avg" in k}, "markdown": md}
