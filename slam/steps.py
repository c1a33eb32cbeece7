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
    """Deterministic id of one step's work: same inputs, same key, same output location."""
    blob = json.dumps({"step": step, **inputs}, sort_keys=True, default=str).encode()
    return store.fingerprint_bytes(blob)[:12]


def step_uri(root: str, step: str, key: str) -> str:
    return store.join(store.absolute(root), step, key)


def timed(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Environment defaults, progress logging, and the step's own wall time in outputs["seconds"]."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict:
        from slam.env import apply_defaults

        if not logging.getLogger().handlers:  # a KFP task process: make the step's progress visible
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                                datefmt="%H:%M:%S")
        apply_defaults()
        log.info("step %s starting", fn.__name__)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        result.setdefault("outputs", {})["seconds"] = round(time.perf_counter() - t0, 2)
        log.info("step %s done in %.1f s -> %s", fn.__name__, result["outputs"]["seconds"], result.get("uri"))
        return result

    return wrapper


def _read_json_or_empty(uri: str) -> dict:
    try:
        return store.read_json(uri)
    except SlamError:
        return {}


def _train_config(*, root: str, base_model: str, data_uri: str, preset: str, overrides: str, mlflow_uri: str,
                  experiment: str, train: dict[str, Any]) -> SlamConfig:
    """The preset YAML (or the defaults) + the step's overrides, then the pipeline's own values on top.
    The model stays a URI: every process that loads it resolves it (slam.models.resolve_model)."""
    from slam.config import load_config

    cfg = load_config(preset or None, overrides=split_overrides(overrides))
    return cfg.replace(model={"path": base_model}, data={"train": data_uri}, train=train, storage={"root": root},
                       tracking={"uri": mlflow_uri, "experiment": experiment or "slam"})


# --------------------------------------------------------------------------------------------------
# The steps


@timed
def prepare_data(*, storage: str, languages: str, train_data: str = "", synth_problems: int = 200,
                 synth_seed: int = 0) -> dict:
    """Use a built dataset as is (`train_data`), or synthesize the multilingual world under storage."""
    langs = split_list(languages, "languages")
    if train_data:
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
        if store.exists(store.join(uri, store.SUCCESS)):
            log.info("data: reusing %s", uri)
        else:
            synth(uri, langs=langs, seed=synth_seed, **sizes)
    manifest = _read_json_or_empty(store.join(uri, "manifest.json"))
    from slam.data.build import trained_langs

    trained = trained_langs(manifest)
    zero = [x for x in langs if trained is not None and x not in trained]
    notes = list(manifest.get("notes", [])) + ([f"zero-shot (evaluated, not trained): {', '.join(zero)}"] if zero else [])
    for note in notes:
        log.info("data: %s", note)
    md = (f"# Training data\n\n`{uri}`\n\n" + "".join(f"- {n}\n" for n in notes)
          + f"\n```json\n{json.dumps(manifest.get('counts', manifest), indent=2)[:4000]}\n```\n")
    return {"uri": uri, "outputs": {"languages": ",".join(langs)}, "metrics": {}, "markdown": md}


@timed
def probe_layers(*, storage: str, base_model: str, data_uri: str, languages: str, method: str = "msd",
                 top_k: int = 6, selection: str = "top-k", max_questions: int = 32) -> dict:
    """Probe the base model with the parallel probe questions: probe.json, heatmap, scores, summary."""
    from slam.config import ProbeConfig
    from slam.data.loaders import read_records
    from slam.models import load_model_and_tokenizer, resolve_model
    from slam.probe import run_probe
    from slam.probe.report import render_markdown, write_outputs

    langs = split_list(languages, "languages")
    src = store.join(data_uri, "probe.jsonl")
    if not store.exists(src):
        raise SlamError(f"{data_uri} has no probe.jsonl (parallel probe questions: `slam data synth` writes one)")
    pcfg = ProbeConfig(method=method, langs=langs, top_k=top_k, selection=selection, max_questions=max_questions)
    key = step_key("probe", model=base_model, data=data_uri, langs=langs, method=method, top_k=top_k,
                   selection=selection, n=max_questions)
    out = step_uri(storage, "probe", key)
    report_uri = store.join(out, "probe.json")
    if store.exists(store.join(out, store.SUCCESS)):
        report = store.read_json(report_uri)
        log.info("probe: reusing %s", report_uri)
    else:
        model, tok = load_model_and_tokenizer(resolve_model(base_model), device="cpu")
        report = run_probe(model, tok, read_records(src), pcfg)
        write_outputs(report, out)
    layers = report["selected_layers"]
    metrics = {f"score_layer_{i:02d}": float(s) for i, s in enumerate(report["scores"])}
    return {"uri": report_uri, "outputs": {"selected_layers": ",".join(map(str, layers))}, "metrics": metrics,
            "markdown": render_markdown(report) + f"\nReport: `{report_uri}`\n",
            "figures": {f"Probe ({report['method']}): layer x language": store.read_bytes(store.join(out, "heatmap.png")),
                        "Layer scores": store.read_bytes(store.join(out, "scores.png"))}}


@timed
def tune_layer_count(*, storage: str, base_model: str, data_uri: str, probe_uri: str, k_grid: str,
                     preset: str = "", overrides: str = "", launcher: str = "local", mlflow_uri: str = "",
                     experiment: str = "slam") -> dict:
    """Decide the layers to train (and the lr when tune.lr_grid searches it): Ray Tune over k with a reduced
    budget, or no search when the preset fixes train.layers or there is one candidate. -> tune.json"""
    from slam.config import parse_int_list
    from slam.launch import get_launcher

    ks = parse_int_list(k_grid, "k_grid")
    if not ks or any(k <= 0 for k in ks):
        raise SlamError(f"k_grid must list positive layer counts like 2,4,6; got {k_grid!r}")
    key = step_key("tune", model=base_model, data=data_uri, probe=probe_uri, k=ks, preset=preset,
                   overrides=split_overrides(overrides))
    root = store.absolute(storage)
    cfg = _train_config(root=root, base_model=base_model, data_uri=data_uri, preset=preset, overrides=overrides,
                        mlflow_uri=mlflow_uri, experiment=experiment, train={"probe": probe_uri})
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
            "metrics": _tune_metrics(result), "markdown": _tune_markdown(result, ks, results_uri)}


def _no_search(cfg: SlamConfig, ks: list[int]) -> dict | None:
    """The decision when there is nothing to search (None: run the search)."""
    if cfg.train.layers is not None:
        layers = list(cfg.train.layers)
        note = "train.layers is set by the preset/overrides: it wins over the probe, no search"
        return {"best": {"k": len(layers), "layers": layers, "lr": cfg.train.lr, "selection": "given",
                         "metric": "", "value": None, "searched": []}, "rows": [], "note": note}
    if len(ks) == 1 and len(set(cfg.tune.lr_grid)) <= 1 and len(set(cfg.tune.selections)) <= 1:
        from slam.probe import select_layers

        selection = cfg.tune.selections[0] if cfg.tune.selections else "top-k"
        layers = select_layers(store.read_json(cfg.train.probe), ks[0], selection)
        return {"best": {"k": ks[0], "layers": layers, "lr": cfg.train.lr, "selection": selection, "metric": "",
                         "value": None, "searched": []}, "rows": [], "note": "one candidate: no search"}
    return None


def _tune_metrics(result: dict) -> dict[str, float]:
    best = result["best"]
    metric = best.get("metric") or "val_loss"
    metrics: dict[str, float] = {"best_k": float(best["k"])}
    for r in result["rows"]:
        if isinstance(r.get(metric), (int, float)):
            metrics[f"{metric}_k{r.get('k')}"] = float(r[metric])
    return metrics


def _tune_markdown(result: dict, ks: list[int], results_uri: str) -> str:
    best = result["best"]
    metric = best.get("metric") or "val_loss"
    rows = ["| k | selection | lr | " + metric + " | status | |", "|---:|:--|---:|---:|:--|:--|"]
    for r in sorted(result["rows"], key=lambda r: (r.get("k", 0), str(r.get("selection")), r.get("lr") or 0)):
        v = r.get(metric)
        shown = f"{v:.4f}" if isinstance(v, (int, float)) else "-"
        rows.append(f"| {r.get('k')} | {r.get('selection')} | {r.get('lr')} | {shown} | {r.get('status')} | "
                    f"{'best' if r.get('trial') == best.get('trial') else ''} |")
    return (f"# Layer-count search (Ray Tune)\n\nLayers to train: **{', '.join(map(str, best['layers']))}** "
            f"(k = {best['k']}, grid {ks}, {metric})\n\n"
            + ("\n".join(rows) if result["rows"] else result.get("note", "")) + f"\n\n`{results_uri}`\n")


@timed
def train_slam(*, storage: str, base_model: str, data_uri: str, probe_uri: str, tune_uri: str, preset: str = "",
               overrides: str = "", launcher: str = "local", mlflow_uri: str = "", experiment: str = "slam") -> dict:
    """Fine-tune the FFN up/down of the layers the tune step decided (its tune.json); the delta lands
    under storage."""
    from slam.launch import get_launcher

    best = store.read_json(tune_uri)["best"]
    decided: dict[str, Any] = {"probe": probe_uri, "layers": list(best["layers"])}
    if "lr" in best.get("searched", []):
        decided["lr"] = float(best["lr"])
    root = store.absolute(storage)
    cfg = _train_config(root=root, base_model=base_model, data_uri=data_uri, preset=preset, overrides=overrides,
                        mlflow_uri=mlflow_uri, experiment=experiment, train=decided)
    key = step_key("train", model=base_model, data=data_uri, probe=probe_uri, decided=decided, preset=preset,
                   overrides=split_overrides(overrides))
    result = get_launcher(launcher).train(cfg, step="train", key=key)
    metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"uri": result["delta_uri"], "outputs": {"layers": ",".join(map(str, decided["layers"])),
                                                    "lr": cfg.train.lr, "run_name": result.get("run_name", "")},
            "metrics": metrics, "markdown": ""}


@timed
def evaluate(*, storage: str, base_model: str, data_uri: str, delta_uri: str = "", label: str = "",
             tasks: str = "synthetic", languages: str = "", limit: int = 0, max_new_tokens: int = 0,
             benchmarks: str = "", mlflow_uri: str = "", experiment: str = "slam") -> dict:
    """Per-language accuracy of base (no delta) or base + delta on each task; eval.json/md/png per task.
    MGSM/MSVAMP come from `benchmarks` (a root or task=URI pairs, slam.tasks.sources), else from the
    data set's test split; problems the data set held out for probing are never evaluated on; languages
    the data set does not train are marked zero-shot."""
    from slam import evaluate as ev
    from slam.config import TrackingConfig
    from slam.data.build import trained_langs
    from slam.tracking import get_tracker, pipeline_tags

    langs = split_list(languages, "languages")
    task_names = split_list(tasks, "tasks")
    if not task_names:
        raise SlamError("evaluate: no tasks given (synthetic, mgsm, msvamp)")
    label = label or ("slam" if delta_uri else "base")
    manifest = _read_json_or_empty(store.join(data_uri, "manifest.json")) if data_uri else {}
    held_out = (manifest.get("probe") or {}).get("held_out") or {}
    plan = {task: _eval_plan(task, benchmarks, data_uri, langs) for task in task_names}  # bad sources fail here
    key = step_key("eval", model=base_model, delta=delta_uri, data=data_uri, tasks=task_names, langs=langs,
                   limit=limit, max_new_tokens=max_new_tokens, sources={t: p[0] for t, p in plan.items()})
    out = step_uri(storage, "eval", f"{label}-{key}")
    model = tok = None
    reports: dict[str, tuple[str, dict]] = {}
    for task, (source, task_langs, missing) in plan.items():
        task_uri = store.join(out, task)
        json_uri = store.join(task_uri, "eval.json")
        if store.exists(json_uri):  # eval.json is written last: present = complete
            reports[task] = (json_uri, store.read_json(json_uri))
            continue
        if model is None:
            model, tok = _load_for_eval(base_model, delta_uri)
        report = ev.evaluate_task(model, tok, task, source, langs=task_langs or None, limit=limit or None,
                                  exclude=held_out.get(task, ()), max_new_tokens=max_new_tokens)
        report["meta"].update({"label": label, "base_model": base_model, "delta": delta_uri,
                               "not_in_benchmark": missing})
        ev.mark_zero_shot(report, trained_langs(manifest))
        ev.write_report(report, task_uri, title=f"{label}: {task} per-language accuracy (%)")
        reports[task] = (json_uri, report)

    metrics: dict[str, float] = {}
    md = [f"# Evaluation: {label}\n"]
    figures = {}
    for task, (json_uri, report) in reports.items():
        for lang, r in report["per_lang"].items():
            metrics[f"{task}_acc_{lang}"] = r["accuracy"]
        for k in ("average", "average_non_en", "english"):
            if report.get(k) is not None:
                metrics[f"{task}_{k}"] = report[k]
        notes = [f"Zero-shot (not in the training data): {', '.join(report['zero_shot'])}."] if report.get("zero_shot") else []
        if report["meta"].get("not_in_benchmark"):
            notes.append(f"Not in {task}: {', '.join(report['meta']['not_in_benchmark'])}.")
        md.append(f"## {task}\n\n{ev.markdown_table(report)}\n\n" + "".join(n + "\n" for n in notes)
                  + f"\n`{json_uri}`\n")
        figures[f"{label}: {task}"] = store.read_bytes(store.join(store.join(out, task), "eval.png"))
    first_uri, first = next(iter(reports.values()))
    tracker = get_tracker(TrackingConfig(uri=mlflow_uri, experiment=experiment or "slam"))
    with tracker.run(f"eval-{label}", key=f"eval/{label}/{key}", tags=pipeline_tags({"slam.step": "eval"})) as run:
        run.log_params({"base_model": base_model, "delta": delta_uri or "(none)", "tasks": task_names,
                        "langs": langs, "limit": limit})
        run.log_metrics(metrics)
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
                   registry_name: str, mlflow_uri: str, experiment: str = "slam") -> dict:
    """Register the delta (same delta twice = one version) and gate `champion`; a model card comparing
    base vs SLAM per language."""
    from slam import registry
    from slam.config import TrackingConfig
    from slam.delta import read_manifest
    from slam.evaluate import compare_table

    tracking = TrackingConfig(uri=mlflow_uri, experiment=experiment or "slam", registry_name=registry_name)
    result = registry.register_delta(tracking, delta_uri, slam_eval_uri, name=registry_name, base=base_model)
    base_report, slam_report = store.read_json(base_eval_uri), store.read_json(slam_eval_uri)
    manifest = read_manifest(delta_uri)
    md = (f"# {result.name} version {result.version} ({result.alias})\n\n{result.reason}\n\n"
          f"Tuned layers: {manifest.get('layers')} ({manifest.get('fraction', 0):.2%} of the parameters; "
          f"probe `{probe_uri}`)  \nDelta: `{delta_uri}`\n\n"
          f"{compare_table(base_report, slam_report, ('base', 'SLAM'))}\n")
    return {"uri": result.model_uri, "outputs": {"version": result.version, "alias": result.alias,
                                                 "created": result.created, "run_id": result.run_id},
            "metrics": {}, "markdown": md}
