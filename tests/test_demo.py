"""`slam demo --quick`: the reduced end-to-end pipeline CI runs on every change (SmolLM2, kfp.local, Ray,
MLflow sqlite, artifacts on a real S3 API server), and what re-running it must not duplicate.

    .venv/bin/python -m pytest -q tests/test_demo.py          # integration; ~4 min on 2 cores
"""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quick_demo(smollm2_dir, s3_server, tmp_path_factory):
    """One `slam demo --quick` with artifacts on the S3 test server: (out dir, s3 prefix, stdout, summary)."""
    import contextlib
    import io
    import uuid

    from slam import storage
    from slam.cli import main

    bucket = f"demo-{uuid.uuid4().hex[:8]}"
    storage.s3_client().create_bucket(Bucket=bucket)
    out = tmp_path_factory.mktemp("demo") / "demo"
    prefix = f"s3://{bucket}/demo"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--quick", "--out", str(out), "--storage", prefix])
    assert rc == 0, buf.getvalue()[-3000:]
    return out, prefix, buf.getvalue(), json.loads((out / "demo-summary.json").read_text())


def test_quick_demo_end_to_end_on_s3(quick_demo):
    from slam import storage

    out, prefix, printed, summary = quick_demo
    s3_bucket = prefix.rsplit("/", 1)[0]

    # what the demo promises to print, on a quiet console: one line per step start/finish, progress lines,
    # the summary; no executor dumps, Tune tables or library warnings (those are in the logs)
    assert "Per-language accuracy" in printed and "SLAM" in summary["table"]
    for lang in ("en", "de", "zh"):
        assert lang in summary["table"]
    assert summary["version"] == "1" and summary["alias"] in ("champion", "challenger")
    assert f"mlflow ui --backend-store-uri sqlite:///{out.resolve()}/mlflow/mlflow.db" in printed
    assert "#/experiments/" in printed and "workflowType=machine_learning" in printed   # the training view
    assert summary["best_k"] in (2, 4)
    # how k was decided, said plainly: Tune's pick by its metric, or that its trials tied (no signal)
    decided = summary["k_decision"]
    assert decided.startswith(f"k = {summary['best_k']}: ") and "k in [2, 4]" in decided and decided in printed
    assert len(summary["trained_layers"].split(",")) == summary["best_k"]
    assert summary["wall_s"] > 0 and "train-slam" in summary["steps_s"]
    lines = printed.splitlines()
    assert len(lines) <= 60, f"{len(lines)} console lines:\n{printed}"
    for noise in ("executor_input", "Trial status", "WARNING", "Traceback", "Loading weights"):
        assert noise not in printed, noise
    assert sum("✓" in ln for ln in lines) == 7 and any("» train" in ln and "took" in ln for ln in lines)
    assert (out / "logs" / "train-slam.log").stat().st_size > 0 and (out / "logs" / "pipeline.log").is_file()

    # every step wrote to S3 (kfp.local's own root is local; the components uploaded themselves)
    bucket = s3_bucket[len("s3://"):]
    keys = [o["Key"] for page in storage.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    for part in ("demo/data/", "demo/probe/", "demo/tune/", "demo/eval/"):
        assert any(k.startswith(part) for k in keys), part
    assert any(k.endswith("/delta/_SUCCESS") for k in keys)
    assert sum(k.endswith("eval.json") for k in keys) == 2

    # KFP artifacts: per-language accuracy (percent) and base-vs-SLAM deltas, the visualizations
    run_dir = summary["run_dir"]
    from pipeline.local import task_outputs

    tasks = task_outputs(run_dir)
    slam_eval = next(t for t in tasks.values() if t["artifacts"].get("report", {}).get("label") == "slam")
    assert slam_eval["artifacts"]["report"]["uri"].startswith(prefix)
    accs = slam_eval["artifacts"]["metrics"]  # the Metrics artifact: per-language accuracy for the KFP UI
    assert {f"acc/synthetic/{lang}" for lang in ("en", "de", "zh")} <= set(accs)
    assert all(0.0 <= accs[f"acc/synthetic/{lang}"] <= 100.0 for lang in ("en", "de", "zh"))
    assert {f"delta/synthetic/{lang}" for lang in ("en", "de", "zh")} <= set(accs)
    kfp = Path(run_dir)
    assert "data:image/png;base64," in (kfp / "probe-layers" / "heatmap").read_text()
    assert "data:image/png;base64," in (kfp / "train-slam" / "loss_curve").read_text()
    chart = next(kfp.glob("evaluate*/chart"), None)
    assert any("base vs slam per language" in p.read_text() for p in kfp.glob("evaluate*/chart")), chart
    assert "| de |" in (kfp / "prepare-data" / "summary").read_text()


def test_quick_demo_in_mlflow_lineage_from_pipeline_to_model(quick_demo, capsys):
    from mlflow import MlflowClient

    from slam.cli import main

    out, _, printed, summary = quick_demo
    uri = f"sqlite:///{out.resolve()}/mlflow/mlflow.db"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("slam")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_step: dict = {}
    for r in runs:
        by_step.setdefault(r.data.tags.get("slam.step"), []).append(r)
    (parent,) = by_step["pipeline"]
    assert parent.data.tags["kfp.run_name"] == Path(summary["run_dir"]).name and parent.info.status == "FINISHED"
    children = {r.data.tags.get("slam.step") for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert children >= {"data", "probe", "tune", "train", "eval", "register"}
    (train,) = by_step["train"]
    evals = {r.data.tags["slam.label"]: r for r in by_step["eval"]}
    # one naming scheme, base and SLAM side by side, the deltas on the SLAM run
    for lang in ("en", "de", "zh"):
        assert f"acc/synthetic/{lang}" in evals["base"].data.metrics
        assert evals["slam"].data.metrics[f"delta/synthetic/{lang}"] == pytest.approx(
            evals["slam"].data.metrics[f"acc/synthetic/{lang}"] - evals["base"].data.metrics[f"acc/synthetic/{lang}"])
    assert evals["slam"].data.tags["slam.train_run"] == train.info.run_id
    # live training metrics (one point per step), constants as params/tags, datasets, artifacts
    assert len(client.get_metric_history(train.info.run_id, "train/loss")) == 6
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss"} <= set(train.data.metrics)
    assert not {"attempts", "world_size", "quarantined", "trainable"} & set(train.data.metrics)
    assert any(k.startswith("system/") for k in train.data.metrics)
    assert {d.dataset.name for d in client.get_run(train.info.run_id).inputs.dataset_inputs} == {"train"}
    assert {f.path for f in client.list_artifacts(train.info.run_id)} >= {"config.yaml", "loss_curve.png", "delta"}
    assert {f.path for f in client.list_artifacts(evals["slam"].info.run_id, "synthetic")} >= \
        {"synthetic/eval.json", "synthetic/eval.png", "synthetic/base_vs_slam.png"}
    (probe,) = by_step["probe"]
    assert "probe/heatmap.png" in {f.path for f in client.list_artifacts(probe.info.run_id, "probe")}
    # the model version comes from the training run, with an MLflow 3 logged model
    mv = client.get_model_version("slam", summary["version"])
    assert mv.run_id == train.info.run_id and mv.source.startswith("models:/m-")
    assert mv.tags["slam.trained_languages"] == "de,en,zh" and "## Gate" in mv.description
    # the command the demo printed works as printed
    cmd = next(ln.split("in a terminal: ", 1)[1] for ln in printed.splitlines() if "in a terminal: slam runs" in ln)
    assert main(cmd.split()[1:]) == 0
    table = capsys.readouterr().out
    assert "eval-base" in table and "eval-slam" in table and "Δ de" in table


@pytest.mark.slow
def test_rerunning_the_demo_duplicates_no_training_or_model_versions(quick_demo, capsys):
    from mlflow import MlflowClient

    from slam.cli import main

    out, prefix, _, _ = quick_demo
    client = MlflowClient(f"sqlite:///{out.resolve()}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("slam")
    assert len(client.search_model_versions("name='slam'")) == 1

    # same parameters again: a second pipeline run (its own parent run), the same training run, one version
    assert main(["demo", "--quick", "--out", str(out), "--storage", prefix]) == 0
    capsys.readouterr()
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert sum(r.data.tags.get("slam.step") == "pipeline" for r in runs) == 2
    assert sum(r.data.tags.get("slam.step") == "train" for r in runs) == 1
    assert [str(v.version) for v in client.search_model_versions("name='slam'")] == ["1"]
