"""`slam demo --quick`: the reduced end-to-end pipeline CI runs on every change (SmolLM2, kfp.local, Ray,
MLflow sqlite, artifacts on a real S3 API server), and what re-running it must not duplicate.

    .venv/bin/python -m pytest -q tests/test_demo.py          # integration; ~4 min on 2 cores
"""

import json

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

    # what the demo promises to print
    assert "Per-language accuracy" in printed and "SLAM" in summary["table"]
    for lang in ("en", "de", "zh"):
        assert lang in summary["table"]
    assert summary["version"] == "1" and summary["alias"] in ("champion", "challenger")
    assert f"mlflow ui --backend-store-uri sqlite:///{out.resolve()}/mlflow/mlflow.db" in printed
    assert summary["best_k"] in (2, 4)
    assert len(summary["trained_layers"].split(",")) == summary["best_k"]
    assert summary["wall_s"] > 0 and "train-slam" in summary["steps_s"]

    # every step wrote to S3 (kfp.local's own root is local; the components uploaded themselves)
    bucket = s3_bucket[len("s3://"):]
    keys = [o["Key"] for page in storage.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    for part in ("demo/data/", "demo/probe/", "demo/tune/", "demo/eval/"):
        assert any(k.startswith(part) for k in keys), part
    assert any(k.endswith("/delta/_SUCCESS") for k in keys)
    assert sum(k.endswith("eval.json") for k in keys) == 2

    # KFP artifacts carry per-language accuracy and the visualizations
    run_dir = summary["run_dir"]
    from pipeline.local import task_outputs

    tasks = task_outputs(run_dir)
    slam_eval = next(t for t in tasks.values() if t["artifacts"].get("report", {}).get("label") == "slam")
    assert slam_eval["artifacts"]["report"]["uri"].startswith(prefix)
    accs = slam_eval["artifacts"]["metrics"]  # the Metrics artifact: per-language accuracy for the KFP UI
    assert {f"synthetic_acc_{lang}" for lang in ("en", "de", "zh")} <= set(accs)
    assert all(0.0 <= accs[f"synthetic_acc_{lang}"] <= 1.0 for lang in ("en", "de", "zh"))
    heat = next((out / "kfp").rglob("probe-layers/heatmap")).read_text()
    assert "data:image/png;base64," in heat


@pytest.mark.slow
def test_rerunning_the_demo_duplicates_no_runs_or_model_versions(quick_demo, capsys):
    from mlflow import MlflowClient

    from slam.cli import main

    out, prefix, _, _ = quick_demo
    client = MlflowClient(f"sqlite:///{out.resolve()}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("slam")
    runs_before = sorted(r.info.run_name for r in client.search_runs([exp.experiment_id], max_results=1000))
    versions_before = client.search_model_versions("name='slam'")
    assert len(versions_before) == 1

    # same parameters again: same runs, same single model version
    assert main(["demo", "--quick", "--out", str(out), "--storage", prefix]) == 0
    capsys.readouterr()
    runs_after = sorted(r.info.run_name for r in client.search_runs([exp.experiment_id], max_results=1000))
    assert runs_after == runs_before
    assert [str(v.version) for v in client.search_model_versions("name='slam'")] == ["1"]
