"""The pipeline's steps as plain functions on URIs: what each KFP component in components/ calls once.

    from slam import steps
    out = steps.prepare_data(storage="runs/demo", languages="en,de,zh", synth_problems=200)
    out = steps.probe_layers(storage="runs/demo", base_model="pypi:smollm2", data_uri=out["uri"], ...)

Every step writes its outputs under `<storage>/<step>/<key>/` (a local dir or s3://), where `key` is a
fingerprint of the step's inputs: re-running with the same parameters lands in the same place, re-attaches
to the same MLflow runs (tracking find-or-create), the same RayJob names and the same model version
(registry dedup by delta fingerprint). A step returns a dict:

    {"uri": <main output URI>, "outputs": {...small values...}, "metrics": {name: float},
     "markdown": str, "html": str}

and `publish()` turns that into KFP artifacts (pointer file + metadata["uri"], Metrics, Markdown, HTML)
by duck typing, so this module never imports kfp. Launch targets for train/tune are in slam.launchers.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slam import storage as store  # (the steps take a `storage` root parameter)
from slam.errors import SlamError

log = logging.getLogger(__name__)

PYPI_MODELS = {"pypi:smollm2": "smollm2", "smollm2": "smollm2"}
SYNTH_TEST, SYNTH_PROBE = 100, 64  # held-out questions per language for evaluation / probing
MODEL_CACHE = Path(os.environ.get("SLAM_MODELS_DIR", Path.home() / ".cache" / "slam" / "models"))


# --------------------------------------------------------------------------------------------------
# Plumbing shared by the steps


def step_key(step: str, **inputs: Any) -> str:
    """Deterministic id of one step's work: same inputs, same key, same output location."""
    blob = json.dumps({"step": step, **inputs}, sort_keys=True, default=str).encode()
    return store.fingerprint_bytes(blob)[:12]


def step_uri(root: str, step: str, key: str) -> str:
    return store.join(root, step, key)


def parse_list(text: str, what: str = "languages") -> list[str]:
    items = [x.strip() for x in str(text or "").replace(";", ",").split(",") if x.strip()]
    if len(set(items)) != len(items):
        raise SlamError(f"{what}: duplicate entries in {text!r}")
    return items


def parse_overrides(text: str) -> list[str]:
    """`section.key=value` overrides separated by newlines or ';' (what the pipeline parameter holds)."""
    return [x.strip() for x in str(text or "").replace(";", "\n").splitlines() if x.strip()]


def resolve_model(uri: str) -> str:
    """A local HF model dir for `uri`: `pypi:smollm2` (imported once), an s3:// dir (cached), or a path."""
    if uri in PYPI_MODELS:
        from slam.models import IMPORTERS

        return str(IMPORTERS[PYPI_MODELS[uri]]())
    if store.is_s3(uri):
        dest = MODEL_CACHE / f"s3-{store.fingerprint_bytes(uri.encode())}"
        if not (dest / "config.json").is_file():
            tmp = dest.with_name(dest.name + ".tmp")
            store.download_dir(uri, tmp, require_success=False)
            os.replace(tmp, dest)
        return str(dest)
    if not Path(uri).exists():
        raise SlamError(f"base model not found: {uri} (a model dir, an s3:// URI, or pypi:smollm2)")
    return str(Path(uri).resolve())


def storage_root(root: str) -> str:
    """Local roots become absolute: kfp.local runs each step in its own working directory."""
    return root if store.is_s3(root) else str(Path(root).resolve())


def tracking_cfg(mlflow_uri: str, experiment: str):
    from slam.config import TrackingConfig

    return TrackingConfig(uri=mlflow_uri, experiment=experiment or "slam")


def build_config(preset: str, overrides: str | list[str], **sections: dict[str, Any]):
    """The preset YAML (or the defaults) + overrides, then the pipeline's own values on top."""
    from slam.config import load_config

    ovr = overrides if isinstance(overrides, list) else parse_overrides(overrides)
    cfg = load_config(preset or None, overrides=ovr)
    return cfg.replace(**sections)


def read_pointer(artifact: Any) -> str:
    """The URI a KFP input artifact points at (metadata first, then the pointer file)."""
    if artifact is None:
        return ""
    uri = (getattr(artifact, "metadata", None) or {}).get("uri")
    if uri:
        return str(uri)
    try:
        return json.loads(Path(artifact.path).read_text())["uri"]
    except (OSError, ValueError, KeyError) as e:
        raise SlamError(f"artifact {getattr(artifact, 'name', '?')} carries no storage URI: {e}") from None


def write_pointer(artifact: Any, uri: str, extra: dict[str, Any] | None = None) -> None:
    artifact.metadata["uri"] = uri
    for k, v in (extra or {}).items():
        artifact.metadata[k] = v
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps({"uri": uri, **(extra or {})}, indent=2) + "\n")


def publish(result: dict, pointer: Any = None, *, metrics: Any = None, markdown: Any = None,
            html: Any = None) -> None:
    """Write a step result into KFP output artifacts (any object with .path and .metadata)."""
    if pointer is not None:
        write_pointer(pointer, result["uri"], {k: v for k, v in result.get("outputs", {}).items()
                                               if isinstance(v, (str, int, float, bool))})
    if metrics is not None:
        for name, value in result.get("metrics", {}).items():
            if value is not None:
                metrics.log_metric(name, float(value))
    for art, key in ((markdown, "markdown"), (html, "html")):
        if art is not None:
            Path(art.path).parent.mkdir(parents=True, exist_ok=True)
            Path(art.path).write_text(result.get(key) or f"(no {key} output)\n", encoding="utf-8")
    seconds = result.get("outputs", {}).get("seconds")
    for art in (pointer, markdown, html):
        if art is not None and seconds is not None:
            art.metadata["seconds"] = seconds  # read back by pipeline.cli.step_times (demo timing)


def timed(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Record a step's own wall time in outputs["seconds"] (compute vs orchestration overhead)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict:
        if not logging.getLogger().handlers:  # a KFP task process: make the step's progress visible
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                                datefmt="%H:%M:%S")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        log.info("step %s starting", fn.__name__)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        result.setdefault("outputs", {})["seconds"] = round(time.perf_counter() - t0, 2)
        log.info("step %s done in %.1f s -> %s", fn.__name__, result["outputs"]["seconds"], result.get("uri"))
        return result

    return wrapper


def png_html(title: str, png: bytes, body_html: str = "") -> str:
    """A self-contained HTML page (the KFP UI renders it) with the PNG embedded as base64."""
    b64 = base64.b64encode(png).decode()
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{b64}'/>{body_html}</body></html>\n")


# --------------------------------------------------------------------------------------------------
# The steps


@timed
def prepare_data(*, storage: str, languages: str, train_data: str = "", synth_problems: int = 200,
                 synth_seed: int = 0) -> dict:
    """Use a built dataset as is (`train_data`), or synthesize the multilingual world under storage."""
    root = storage_root(storage)
    langs = parse_list(languages)
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
        uri = step_uri(root, "data", step_key("data", langs=langs, seed=synth_seed, **sizes))
        if _complete(uri, store.SUCCESS):
            log.info("data: reusing %s", uri)
        else:
            synth(uri, langs=langs, seed=synth_seed, **sizes)
    manifest = _read_json_or_empty(storage_join(uri, "manifest.json"))
    md = f"# Training data\n\n`{uri}`\n\n```json\n{json.dumps(manifest.get('counts', manifest), indent=2)[:4000]}\n```\n"
    return {"uri": uri, "outputs": {"languages": ",".join(langs)}, "metrics": {}, "markdown": md}


def storage_join(uri: str, *parts: str) -> str:
    return store.join(uri, *parts)


def _complete(uri: str, marker: str) -> bool:
    """A step's output is reusable when its last-written file exists (writers publish it last)."""
    return store.exists(store.join(uri, marker))


def _read_json_or_empty(uri: str) -> dict:
    try:
        return store.read_json(uri)
    except SlamError:
        return {}


@timed
def probe_layers(*, storage: str, base_model: str, data_uri: str, languages: str, method: str = "msd",
                 top_k: int = 6, selection: str = "top-k", max_questions: int = 32) -> dict:
    """Probe the base model with the parallel probe questions; probe.json + heatmap + ranking table."""
    from slam import probe as probing
    from slam.data.loaders import read_records
    from slam.models import load_model_and_tokenizer

    root = storage_root(storage)
    langs = parse_list(languages)
    src = storage_join(data_uri, "probe.jsonl")
    if not storage_exists(src):
        raise SlamError(f"{data_uri} has no probe.jsonl (parallel probe questions: `slam data synth` writes one)")
    key = step_key("probe", model=base_model, data=data_uri, langs=langs, method=method, top_k=top_k,
                   selection=selection, n=max_questions)
    out = step_uri(root, "probe", key)
    report_uri = storage_join(out, "probe.json")
    if storage_exists(report_uri):
        report = store.read_json(report_uri)
        log.info("probe: reusing %s", report_uri)
    else:
        model, tok = load_model_and_tokenizer(resolve_model(base_model), device="cpu")
        report = probing.run_probe(model, tok, read_records(src), method=method, langs=langs, top_k=top_k,
                                   selection=selection, max_questions=max_questions)
        store.write_json(report_uri, report)
    layers = report["selected_layers"]
    title = f"Language-specificity per layer ({report['method']})"
    png = _scores_png(report, title)
    md = (f"# Probe: {report['method']}, {len(report['langs'])} languages\n\n"
          f"Selected layers ({report['selection']}, k={report['top_k']}): **{', '.join(map(str, layers))}**\n\n"
          + _ranking_table(report) + f"\n\nReport: `{report_uri}`\n")
    metrics = {f"score_layer_{i:02d}": float(s) for i, s in enumerate(report["scores"])}
    return {"uri": report_uri, "outputs": {"selected_layers": ",".join(map(str, layers))}, "metrics": metrics,
            "markdown": md, "html": png_html(title, png, f"<p>Selected layers: {layers}</p>")}


def storage_exists(uri: str) -> bool:
    return store.exists(uri)


def _ranking_table(report: dict, top: int = 12) -> str:
    rows = ["| rank | layer | score | selected |", "|---:|---:|---:|:---:|"]
    chosen = set(report["selected_layers"])
    for r, i in enumerate(report["ranking"][:top], 1):
        rows.append(f"| {r} | {i} | {report['scores'][i]:.4g} | {'x' if i in chosen else ''} |")
    return "\n".join(rows)


def _scores_png(report: dict, title: str) -> bytes:
    """Heatmap: per-language rows when the report has them (stats), plus the layer score row."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, labels = [], []
    per_lang = (report.get("stats") or {}).get("per_lang") or {}
    for lang, values in per_lang.items():
        if isinstance(values, list) and len(values) == len(report["scores"]):
            rows.append(values)
            labels.append(lang)
    scores = np.asarray(report["scores"], dtype=float)
    rows.append(list(scores / scores.max() if scores.max() > 0 else scores))
    labels.append("score (norm.)")
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(scores)), 0.5 * len(rows) + 1.4))
    im = ax.imshow(np.asarray(rows, dtype=float), aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xticks(range(len(scores)), [str(i) for i in range(len(scores))], fontsize=7)
    for i in report["selected_layers"]:
        ax.add_patch(plt.Rectangle((i - 0.5, len(rows) - 1.5), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_xlabel("layer")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


@timed
def evaluate(*, storage: str, base_model: str, data_uri: str, delta_uri: str = "", label: str = "",
             tasks: str = "synthetic", languages: str = "", limit: int = 0, max_new_tokens: int = 0,
             mlflow_uri: str = "", experiment: str = "slam") -> dict:
    """Per-language accuracy of base (no delta) or base + delta on each task; eval.json/md/png per task."""
    from slam import evaluate as ev
    from slam.tracking import get_tracker, pipeline_tags

    root = storage_root(storage)
    langs = parse_list(languages)
    task_names = parse_list(tasks, "tasks")
    if not task_names:
        raise SlamError("evaluate: no tasks given (synthetic, mgsm, msvamp)")
    label = label or ("slam" if delta_uri else "base")
    key = step_key("eval", model=base_model, delta=delta_uri, data=data_uri, tasks=task_names, langs=langs,
                   limit=limit, max_new_tokens=max_new_tokens)
    out = step_uri(root, "eval", f"{label}-{key}")
    model = tok = None
    reports: dict[str, tuple[str, dict]] = {}
    for task in task_names:
        task_uri = storage_join(out, task)
        json_uri = storage_join(task_uri, "eval.json")
        if storage_exists(json_uri):  # eval.json is written last: present = complete
            reports[task] = (json_uri, store.read_json(json_uri))
            continue
        if model is None:
            model, tok = _load_for_eval(base_model, delta_uri)
        report = ev.evaluate_task(model, tok, task, data_uri if task == "synthetic" else "", langs=langs or None,
                                  limit=limit or None, max_new_tokens=max_new_tokens)
        report["meta"].update({"label": label, "base_model": base_model, "delta": delta_uri})
        ev.write_report(report, task_uri, title=f"{label}: {task} per-language accuracy (%)")
        reports[task] = (json_uri, report)

    metrics: dict[str, float] = {}
    md = [f"# Evaluation: {label}\n"]
    html_parts = []
    for task, (json_uri, report) in reports.items():
        for lang, r in report["per_lang"].items():
            metrics[f"{task}_acc_{lang}"] = r["accuracy"]
        for k in ("average", "average_non_en", "english"):
            if report.get(k) is not None:
                metrics[f"{task}_{k}"] = report[k]
        md.append(f"## {task}\n\n{ev.markdown_table(report)}\n\n`{json_uri}`\n")
        png = store.read_bytes(storage_join(json_uri.rsplit("/", 1)[0] if store.is_s3(json_uri)
                                              else str(Path(json_uri).parent), "eval.png"))
        html_parts.append(png_html(f"{label}: {task}", png))
    first_uri, first = next(iter(reports.values()))
    tracker = get_tracker(tracking_cfg(mlflow_uri, experiment))
    with tracker.run(f"eval-{label}", key=f"eval/{label}/{key}", tags=pipeline_tags({"slam.step": "eval"})) as run:
        run.log_params({"base_model": base_model, "delta": delta_uri or "(none)", "tasks": task_names,
                        "langs": langs, "limit": limit})
        run.log_metrics(metrics)
    return {"uri": first_uri, "outputs": {"average": float(first.get("average") or 0.0), "label": label},
            "metrics": metrics, "markdown": "\n".join(md), "html": "\n".join(html_parts)}


def _load_for_eval(base_model: str, delta_uri: str):
    base = resolve_model(base_model)
    if delta_uri:
        from slam.delta import load_model_with_delta

        return load_model_with_delta(base, delta_uri, device="cpu" if not _cuda() else None)
    from slam.models import load_model_and_tokenizer

    return load_model_and_tokenizer(base)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@timed
def register_model(*, base_model: str, delta_uri: str, probe_uri: str, slam_eval_uri: str, base_eval_uri: str,
                   registry_name: str, mlflow_uri: str, experiment: str = "slam") -> dict:
    """Register the delta (same delta twice = one version) and gate `champion`; a model card comparing
    base vs SLAM per language."""
    from slam import registry
    from slam.config import TrackingConfig
    from slam.evaluate import compare_table

    tracking = TrackingConfig(uri=mlflow_uri, experiment=experiment or "slam", registry_name=registry_name)
    result = registry.register_delta(tracking, delta_uri, slam_eval_uri, name=registry_name,
                                     base=resolve_model(base_model) if base_model in PYPI_MODELS else base_model)
    base_report, slam_report = store.read_json(base_eval_uri), store.read_json(slam_eval_uri)
    from slam.delta import read_manifest

    manifest = read_manifest(delta_uri)
    md = (f"# {result.name} version {result.version} ({result.alias})\n\n{result.reason}\n\n"
          f"Tuned layers: {manifest.get('layers')} ({manifest.get('fraction', 0):.2%} of the parameters; "
          f"probe `{probe_uri}`)  \nDelta: `{delta_uri}`\n\n"
          f"{compare_table(base_report, slam_report, ('base', 'SLAM'))}\n")
    return {"uri": result.model_uri, "outputs": {"version": result.version, "alias": result.alias,
                                                 "created": result.created, "run_id": result.run_id},
            "metrics": {}, "markdown": md}


def _train_config(*, root: str, base_model: str, data_uri: str, probe_uri: str, preset: str, overrides: str,
                  launcher: str, mlflow_uri: str, experiment: str, **train: Any):
    # On a cluster the pods resolve the model themselves (an s3:// dir); locally we hand over a path.
    model = resolve_model(base_model) if launcher == "local" else base_model
    return build_config(preset, overrides, model={"path": model}, data={"train": data_uri},
                        train={"probe": probe_uri, "layers": None, **train}, storage={"root": root},
                        tracking={"uri": mlflow_uri, "experiment": experiment or "slam"})


@timed
def tune_layer_count(*, storage: str, base_model: str, data_uri: str, probe_uri: str, k_grid: str,
                     preset: str = "", overrides: str = "", launcher: str = "local", mlflow_uri: str = "",
                     experiment: str = "slam") -> dict:
    """Ray Tune over k (how many probed layers to tune) with a reduced budget; the best k by tune.metric.

    A one-value grid needs no search: that k is returned without starting Ray."""
    from slam.config import parse_int_list
    from slam.launchers import get_launcher

    root = storage_root(storage)
    ks = parse_int_list(k_grid, "k_grid")
    if not ks or any(k <= 0 for k in ks):
        raise SlamError(f"k_grid must list positive layer counts like 2,4,6; got {k_grid!r}")
    key = step_key("tune", model=base_model, data=data_uri, probe=probe_uri, k=ks, preset=preset,
                   overrides=parse_overrides(overrides))
    out = step_uri(root, "tune", key)
    if len(ks) == 1:
        result = {"best": {"k": ks[0], "metric": "", "value": None}, "rows": [], "out_uri": "",
                  "note": "one-value k_grid: no search"}
    else:
        cfg = _train_config(root=root, base_model=base_model, data_uri=data_uri, probe_uri=probe_uri,
                            preset=preset, overrides=overrides, launcher=launcher, mlflow_uri=mlflow_uri,
                            experiment=experiment)
        cfg = cfg.replace(tune={"k_grid": ks, "name": cfg.tune.name or f"tune-{key}"})
        result = get_launcher(launcher).tune(cfg, step="tune", key=key)
    best = result["best"]
    results_uri = store.write_json(store.join(out, "tune.json"), result)
    metric = best.get("metric") or "val_loss"
    rows = ["| k | selection | lr | " + metric + " | status | |", "|---:|:--|---:|---:|:--|:--|"]
    metrics: dict[str, float] = {"best_k": float(best["k"])}
    for r in sorted(result["rows"], key=lambda r: (r.get("k", 0), str(r.get("selection")), r.get("lr") or 0)):
        v = r.get(metric)
        shown = f"{v:.4f}" if isinstance(v, (int, float)) else "-"
        rows.append(f"| {r.get('k')} | {r.get('selection')} | {r.get('lr')} | {shown} | {r.get('status')} | "
                    f"{'best' if r.get('trial') == best.get('trial') else ''} |")
        if isinstance(v, (int, float)):
            metrics[f"{metric}_k{r.get('k')}"] = float(v)
    md = (f"# Layer-count search (Ray Tune)\n\nBest k = **{best['k']}** (grid {ks}, {metric})\n\n"
          + ("\n".join(rows) if result["rows"] else result.get("note", "")) + f"\n\n`{results_uri}`\n")
    return {"uri": results_uri, "outputs": {"best_k": int(best["k"])}, "metrics": metrics, "markdown": md}


@timed
def train_slam(*, storage: str, base_model: str, data_uri: str, probe_uri: str, top_k: int, preset: str = "",
               overrides: str = "", launcher: str = "local", mlflow_uri: str = "", experiment: str = "slam") -> dict:
    """Fine-tune the FFN up/down of the probe's top-k layers; the delta lands under storage."""
    from slam.launchers import get_launcher
    from slam.train import layers_to_tune

    root = storage_root(storage)
    cfg = _train_config(root=root, base_model=base_model, data_uri=data_uri, probe_uri=probe_uri, preset=preset,
                        overrides=overrides, launcher=launcher, mlflow_uri=mlflow_uri, experiment=experiment,
                        top_k=int(top_k))
    layers = layers_to_tune(cfg)
    key = step_key("train", model=base_model, data=data_uri, probe=probe_uri, k=int(top_k), preset=preset,
                   overrides=parse_overrides(overrides))
    result = get_launcher(launcher).train(cfg, step="train", key=key)
    metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"uri": result["delta_uri"], "outputs": {"layers": ",".join(map(str, layers)),
                                                    "run_name": result.get("run_name", "")},
            "metrics": metrics, "markdown": ""}
