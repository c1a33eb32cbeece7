"""`slam demo`: the whole compiled Kubeflow pipeline, run here through kfp.local on embedded defaults.

    slam demo                      # SmolLM2-135M-Instruct, synthetic multilingual world, local Ray + MLflow
    slam demo --quick              # the reduced run CI does end to end (fewer steps/questions)
    slam demo --storage s3://bucket/demo    # artifacts on a real S3 endpoint (AWS_ENDPOINT_URL, AWS_*)
    slam demo --real --shared-data ../shared/data          # real data: GSM8K CoT + QAlign, MGSM (en,de,zh,sw)
    slam demo --real --quick --shared-data ../shared/data  # its reduced variant (what CI runs)

--real first builds a reduced real data set with `slam data build` (slam.data.real: a few hundred GSM8K
problems with their QAlign translations, a parallel probe set, the MGSM test split) under the storage,
then runs the same DAG on it with MGSM evaluation (benchmarks=…, default the shared data).

Everything lands under --out (default runs/demo): storage/ (datasets, probe, tune, checkpoints, deltas,
eval reports; unless --storage), kfp/ (kfp.local task outputs), mlflow/ (sqlite + artifacts), logs/
(everything every step printed; the console shows one line per step, progress with ETAs, and the
summary: accuracy per language, the model version, the MLflow links and the `slam runs compare`
command). Re-running with the same settings reuses the data/probe/eval outputs and the training run and
registers no second model version; each pipeline run gets its own parent run in MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slam.errors import SlamError

log = logging.getLogger(__name__)

# The demo's embedded defaults. Measured 14.6 min on a quiet 2-core box (README: per step; training and the
# two evaluations are most of it).
DEMO_PARAMS: dict[str, Any] = {
    "base_model": "pypi:smollm2",
    "languages": "en,de,fr,zh,th,sw",
    "synth_problems": 240,
    "probe_questions": 32,
    "probe_top_k": 6,
    # the paper's k, one candidate: the tune step decides without a search. Tune over {2, 6} took 432 s
    # and told nothing: after 8 steps no trial answered a validation question right (both 0.0), and ties
    # keep the smaller k. `slam demo k_grid=2,6 tune.max_steps=60` searches (trial settings below).
    "k_grid": "6",
    # trials use the plain torch engine (no DeepSpeed JIT per trial); the final training run uses DeepSpeed
    "tune_overrides": ["tune.max_steps=8", "tune.asha=false", "train.engine=torch", "train.lr=2e-4",
                       "train.report_every=4", "train.micro_batch_size=4", "train.val_max_examples=32",
                       "data.max_length=384"],
    # 2 Ray workers x micro-batch 2 = global batch 4 (DeepSpeed ZeRO-2 across the two, gloo); validation
    # every 20 steps gives the val-loss curve next to the live train loss in MLflow (every 10 was ~25 s each,
    # a quarter of the training step's time)
    "train_overrides": ["train.max_steps=60", "train.lr=2e-4", "train.num_workers=2", "train.micro_batch_size=2",
                        "train.report_every=10", "train.val_every=20", "train.val_max_examples=32",
                        "data.max_length=384"],
    "eval_limit": 24,
    "eval_max_new_tokens": 96,
}
# The reduced end-to-end run (CI): same DAG and steps, fewer languages, steps and questions.
QUICK_PARAMS: dict[str, Any] = {
    **DEMO_PARAMS,
    "languages": "en,de,zh",
    "synth_problems": 48,
    "probe_questions": 12,
    "probe_top_k": 4,
    "k_grid": "2,4",
    "tune_overrides": ["tune.max_steps=2", "tune.asha=false", "train.engine=torch", "train.report_every=2",
                       "train.micro_batch_size=2", "train.val_max_examples=8", "data.max_length=384"],
    "train_overrides": ["train.max_steps=6", "train.lr=2e-4", "train.micro_batch_size=2", "train.report_every=3",
                        "train.val_every=3", "train.val_max_examples=8", "data.max_length=384"],
    "eval_limit": 4,
    "eval_max_new_tokens": 40,
}


# The real-data run (--real): same DAG, real data. Measured 13.4 min on a quiet 2-core box (README: per step;
# with Tune over {2, 6}, 60 steps and 32 probe questions it was 32.8 min).
REAL_BUILD: dict[str, Any] = {"max_problems": 100, "probe_questions": 24, "tests": ["mgsm"]}
REAL_PARAMS: dict[str, Any] = {
    **DEMO_PARAMS,
    "languages": "en,de,zh,sw",
    "eval_tasks": "mgsm",
    "k_grid": "6",  # the paper's k; one candidate, so the tune step decides without a search (Tune was 636 s)
    "tune_overrides": ["tune.max_steps=8", "tune.asha=false", "train.engine=torch", "train.lr=2e-4",
                       "train.report_every=4", "train.micro_batch_size=4", "train.val_max_examples=16",
                       "data.max_length=512"],
    "train_overrides": ["train.max_steps=24", "train.lr=2e-4", "train.num_workers=2", "train.micro_batch_size=2",
                        "train.report_every=4", "train.val_max_examples=32", "data.max_length=512"],
    "eval_limit": 8,
    "eval_max_new_tokens": 160,
}
REAL_QUICK_BUILD: dict[str, Any] = {"max_problems": 24, "probe_questions": 8, "tests": ["mgsm"]}
REAL_QUICK_PARAMS: dict[str, Any] = {
    **REAL_PARAMS,
    "languages": "en,de,zh",
    "probe_top_k": 2,
    "k_grid": "2",  # one candidate: the tune step decides without a search (the synthetic quick demo runs Tune)
    "train_overrides": ["train.max_steps=4", "train.lr=2e-4", "train.micro_batch_size=2", "train.report_every=2",
                        "train.val_max_examples=4", "data.max_length=512"],
    "eval_limit": 2,
    "eval_max_new_tokens": 24,
}


@dataclass
class DemoResult:
    version: str
    alias: str
    gate: str
    selected_layers: str
    trained_layers: str
    best_k: int
    table: str
    base: dict
    slam: dict
    mlflow: dict
    wall_s: float
    steps_s: dict[str, float]
    run_dir: str
    logs: str
    base_model: str = ""
    loss: dict | None = None  # {"first", "last", "steps", "median_step_s"} read back from MLflow; None if unknown
    data: str = ""
    k_decision: str = ""  # how the tune step decided k (slam.steps.k_decision)
    selection: str = ""  # the probe step's policy (bottom-k by default) and the probe's own choice beside it
    probe_choice: str = ""
    probe_stable: bool | None = None


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def run_demo(out: str | os.PathLike = "runs/demo", *, quick: bool = False, storage: str = "",
             params: dict[str, Any] | None = None, mlflow_uri: str = "", overrides: list[str] | None = None,
             verbose: bool = False, real: bool = False, shared_data: str = "") -> DemoResult:
    """Run the pipeline locally and summarise it (see module docstring). `overrides`: `section.key=value`
    config overrides for the tune trials and the training run (after the demo's own)."""
    from pipeline import kfp_client, local
    from slam.env import apply_defaults
    from slam.models import resolve_model
    from slam.tracking import embedded_tracking_uri

    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if real and not shared_data:
        raise SlamError("slam demo --real needs --shared-data DIR|s3://... (GSM8K, QAlign and MGSM, e.g. ../shared/data)")
    base = (REAL_QUICK_PARAMS if quick else REAL_PARAMS) if real else (QUICK_PARAMS if quick else DEMO_PARAMS)
    p = {**base, **(params or {})}
    p["storage"] = storage or p.get("storage") or str(out / "storage")
    p["mlflow_uri"] = mlflow_uri or p.get("mlflow_uri") or embedded_tracking_uri(out / "mlflow")
    for k in ("train_overrides", "tune_overrides"):
        p[k] = [*p.get(k, []), *(overrides or [])]
    p = kfp_client.parse_params([], **p)  # unknown names / bad types fail here, before anything runs
    apply_defaults()

    if p["base_model"] == "pypi:smollm2":
        resolve_model(p["base_model"])  # once per machine (~20 s), not once per step
    build_s = None
    if real:
        t_build = time.perf_counter()
        p["benchmarks"] = p.get("benchmarks") or shared_data
        p["train_data"] = build_real_data(p, shared_data, REAL_QUICK_BUILD if quick else REAL_BUILD)
        build_s = round(time.perf_counter() - t_build, 1)
    _step(f"slam demo{' --real' if real else ''}{' --quick' if quick else ''}: the Kubeflow pipeline through "
          f"kfp.local, {p['base_model']} on {p['languages']}")
    print(f"    logs: {out / 'logs'}   storage: {p['storage']}", flush=True)
    if verbose:
        print(json.dumps(p, indent=2), flush=True)
    t_pipe = time.perf_counter()
    run = local.run_local(p, out / "kfp", log_dir=out / "logs", verbose=verbose)
    wall = time.perf_counter() - t0
    outputs = local.task_outputs(run["run_dir"])
    result = summarise(outputs, p, run, wall, pipeline_wall=time.perf_counter() - t_pipe)
    if build_s is not None:
        result.steps_s = {"slam data build (before the DAG)": build_s, **result.steps_s}
    print(render(result), flush=True)
    (out / "demo-summary.json").write_text(json.dumps(result.__dict__, indent=2, default=str) + "\n")
    return result


def mlflow_links(uri: str, run_dir: str, experiment: str = "slam", model: tuple[str, str] | None = None) -> dict[str, str]:
    """How to open this pipeline run in MLflow: the UI command (embedded store), the runs table in the
    training view, base vs SLAM in the compare view, and the `slam runs compare` command that works."""
    from slam.mlflow_ui import compare_url, model_version_url, runs_url, ui_base
    from slam.tracking import MlflowTracker

    links = {"compare_command": f"slam runs compare --tracking-uri {uri} --experiment {experiment}"}
    if uri.startswith("sqlite:"):
        links["ui_command"] = f"mlflow ui --backend-store-uri {uri} --port 5000"
    t = MlflowTracker(uri, experiment, retries=1)
    try:
        exp, base = t.experiment_id, ui_base(uri)
        parent = t.client.search_runs([exp], f"tags.`kfp.run_name` = '{Path(run_dir).name}'", max_results=1)
        evals = {}
        if parent:
            children = t.client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
            evals = {r.data.tags.get("slam.label"): r.info.run_id for r in children
                     if r.data.tags.get("slam.step") == "eval"}
            links["compare_command"] += f" --pipeline-run {parent[0].info.run_id}"
        links["runs_url"] = runs_url(base, exp)
        if {"base", "slam"} <= set(evals):
            links["compare_url"] = compare_url(base, exp, [evals["base"], evals["slam"]])
        if model and model[1]:
            links["model_url"] = model_version_url(base, *model)
    except Exception as e:  # noqa: BLE001 - links are a convenience; the results are in storage
        log.warning("could not read the MLflow runs back: %s", e)
    return links


def build_real_data(params: dict[str, Any], shared_data: str, sizes: dict[str, Any]) -> str:
    """The reduced real data set under <storage>/data/real-<key> (reused when already complete)."""
    from slam import storage
    from slam.config import split_list
    from slam.data.real import build_real
    from slam.steps import step_key, step_uri

    langs = [x for x in split_list(params["languages"]) if x != "en"]
    key = step_key("data-real", shared=shared_data, langs=langs, benchmarks=params["benchmarks"], **sizes)
    uri = step_uri(params["storage"], "data", f"real-{key}")
    if storage.exists(storage.join(uri, storage.SUCCESS)):
        _step(f"reusing the real data set {uri}")
        return uri
    _step(f"slam data build: {sizes['max_problems']} GSM8K problems x {', '.join(['en', *langs])} "
          f"(QAlign translations), {sizes['probe_questions']} parallel probe questions, MGSM test split -> {uri}")
    manifest = build_real(shared_data, uri, langs=langs, benchmarks=params["benchmarks"], tests=sizes["tests"],
                          probe_questions=sizes["probe_questions"], max_problems=sizes["max_problems"])
    for split, c in manifest["counts"].items():
        print(f"  {split}: {c['total']} examples from {c['problems']} problems", flush=True)
    for note in manifest.get("notes", []):
        print(f"  note: {note}", flush=True)
    return uri


def summarise(outputs: dict[str, dict], params: dict[str, Any], run: dict, wall: float,
              pipeline_wall: float) -> DemoResult:
    from slam import storage
    from slam.evaluate import compare_table
    from slam.steps import k_decision

    def art(task: str, name: str) -> dict:
        try:
            return outputs[task]["artifacts"][name]
        except KeyError:
            raise SlamError(f"pipeline output {task}/{name} missing under {run['run_dir']}") from None

    evals = {art(t, "report").get("label"): art(t, "report")["uri"] for t in outputs if t.startswith("evaluate")}
    if set(evals) != {"base", "slam"}:
        raise SlamError(f"expected base and slam evaluations, got {sorted(evals)} (logs: {run['logs']})")
    base, slam = storage.read_json(evals["base"]), storage.read_json(evals["slam"])
    reg = outputs["register-model"]["parameters"]
    labels = {t: f"{t.split('-')[0]} ({art(t, 'report').get('label')})" for t in outputs if t.startswith("evaluate")}
    steps = {labels.get(t, t): v for t, v in run["steps"].items()}  # "evaluate (base)", not "evaluate-2"
    steps["(orchestration: kfp.local, process start, imports)"] = round(max(0.0, pipeline_wall - sum(run["steps"].values())), 1)
    card = Path(run["run_dir"]) / "register-model" / "card"
    gate = card.read_text().split("\n\n")[1] if card.is_file() else ""
    probe = storage.read_json(art("probe-layers", "probe")["uri"])
    delta_uri = outputs.get("train-slam", {}).get("artifacts", {}).get("delta", {}).get("uri", "")
    return DemoResult(
        base_model=params["base_model"], data=params.get("train_data") or "(synthetic world)",
        loss=loss_curve(params["mlflow_uri"], params.get("experiment") or "slam", delta_uri),
        version=str(reg.get("version", "")), alias=str(reg.get("alias", "")), gate=gate,
        selected_layers=str(outputs["probe-layers"]["parameters"].get("Output", "")),
        trained_layers=str(outputs["train-slam"]["parameters"].get("Output", "")),
        best_k=int(outputs["tune-layer-count"]["parameters"].get("Output", 0)),
        k_decision=k_decision(storage.read_json(art("tune-layer-count", "results")["uri"])),
        selection=str(probe.get("selection", "")), probe_stable=probe.get("stable"),
        probe_choice=",".join(map(str, probe.get("probe_selected_layers") or [])),
        table=compare_table(base, slam, ("base", "SLAM")), base={k: base.get(k) for k in ("average", "average_non_en", "english")},
        slam={k: slam.get(k) for k in ("average", "average_non_en", "english")},
        mlflow=mlflow_links(params["mlflow_uri"], run["run_dir"], params.get("experiment") or "slam",
                            (params.get("registry_name") or "slam", str(reg.get("version", "")))),
        wall_s=round(wall, 1), steps_s=steps, run_dir=run["run_dir"], logs=run["logs"])


def loss_curve(mlflow_uri: str, experiment: str, delta_uri: str) -> dict | None:
    """First/last training loss and the median step time of the run that wrote `delta_uri` (from MLflow,
    where the training loop logs every step); None when it cannot be read."""
    import statistics

    from mlflow import MlflowClient

    if not delta_uri:
        return None
    try:
        client = MlflowClient(mlflow_uri)
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`slam.delta_uri` = '{delta_uri}'")
        if not runs:
            return None
        run_id = runs[0].info.run_id
        loss = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
        times = [m.value for m in client.get_metric_history(run_id, "train/step_time_s")]
    except Exception as e:  # the summary must not fail a finished run
        log.warning("could not read the loss curve from MLflow: %s", e)
        return None
    if not loss:
        return None
    return {"first": round(loss[0][1], 4), "last": round(loss[-1][1], 4), "steps": loss[-1][0],
            "median_step_s": round(statistics.median(times), 2) if times else None}


def render(r: DemoResult) -> str:
    times = "  ".join(f"{k.removesuffix(' (before the DAG)')} {v:.0f}s" for k, v in r.steps_s.items()
                      if not k.startswith("("))
    m = r.mlflow
    loss = (f"Training loss: {r.loss['first']} at step 1 -> {r.loss['last']} at step {r.loss['steps']} "
            f"(median {r.loss['median_step_s']} s/step)" if r.loss else "")
    lines = [f"\nData: {r.data}", f"Per-language accuracy (%), base {r.base_model or 'model'} vs SLAM:\n\n{r.table}\n",
             *([loss] if loss else []),
             f"Layers: {r.selection or 'probe'} {r.selected_layers}"
             + (f" (the probe's own choice {r.probe_choice}, {'stable' if r.probe_stable else 'not stable'})"
                if r.probe_choice and r.probe_choice != r.selected_layers else "")
             + f"; {r.k_decision or f'k = {r.best_k}'}; trained {r.trained_layers}",
             f"Model: slam version {r.version}, alias {r.alias or 'none'} ({r.gate})",
             "MLflow:" + (f"  {m['ui_command']}   (then open the links)" if "ui_command" in m else ""),
             *(f"  {label}: {m[k]}" for k, label in (("runs_url", "runs"), ("compare_url", "base vs SLAM"),
                                                   ("model_url", "model")) if k in m),
             f"  in a terminal: {m['compare_command']}",
             f"Time: {r.wall_s:.0f} s ({times}); logs: {r.logs}"]
    return "\n".join(lines) + "\n"
