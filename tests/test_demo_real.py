"""The real path end to end, reduced (`slam demo --real --quick`): `slam data build` on the shared GSM8K +
QAlign + MGSM data, then the whole compiled DAG through kfp.local with the base model from an s3://
prefix, MGSM from an s3:// prefix, artifacts on the S3 test server and runs/versions on the MLflow test
server.

    SLAM_SHARED_DATA=../shared/data .venv/bin/python -m pytest -q tests/test_demo_real.py   # ~5 min on 2 quiet cores
"""

import json

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_demo(smollm2_dir, shared_data, s3_server, mlflow_server, tmp_path_factory):
    import contextlib
    import io
    import uuid

    from slam import storage
    from slam.cli import main

    bucket = f"real-{uuid.uuid4().hex[:8]}"
    storage.s3_client().create_bucket(Bucket=bucket)
    model = storage.publish_dir(smollm2_dir, f"s3://{bucket}/models/smollm2")
    for lang in ("en", "de", "zh"):
        storage.upload_file(shared_data / "mgsm" / f"mgsm_{lang}.tsv", f"s3://{bucket}/bench/mgsm/mgsm_{lang}.tsv")
    out = tmp_path_factory.mktemp("real") / "demo"
    prefix = f"s3://{bucket}/runs"
    buf = io.StringIO()
    if not mlflow_server.running:
        mlflow_server.start()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--real", "--quick", "--shared-data", str(shared_data), "--out", str(out),
                   "--storage", prefix, "--mlflow-uri", mlflow_server.uri, f"base_model={model}",
                   f"benchmarks=s3://{bucket}/bench", "experiment=real-path", f"registry_name={bucket}"])
    assert rc == 0, buf.getvalue()[-3000:]
    return bucket, prefix, buf.getvalue(), json.loads((out / "demo-summary.json").read_text()), mlflow_server.uri


def test_real_data_pipeline_with_model_and_benchmarks_on_s3(real_demo):
    from slam import storage

    bucket, prefix, printed, summary, mlflow_uri = real_demo
    keys = [o["Key"] for page in storage.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    # the real data set, its probe set and test split, the probe report, the delta and both evaluations: in the bucket
    data = [k for k in keys if k.startswith("runs/data/real-")]
    for name in ("train.jsonl", "val.jsonl", "probe.jsonl", "test_mgsm.jsonl", "manifest.json", "_SUCCESS"):
        assert any(k.endswith(f"/{name}") for k in data), name
    assert any(k.startswith("runs/probe/") and k.endswith("probe.json") for k in keys)
    assert any(k.endswith("/delta/_SUCCESS") for k in keys)
    evals = [k for k in keys if k.startswith("runs/eval/") and k.endswith("mgsm/eval.json")]
    assert len(evals) == 2

    base, slam = (storage.read_json(f"s3://{bucket}/{k}") for k in sorted(evals))
    for report in (base, slam):
        assert {lang: d["total"] for lang, d in report["per_lang"].items()} == {"en": 2, "de": 2, "zh": 2}
        assert report["meta"]["data"] == f"s3://{bucket}/bench/mgsm" and report["zero_shot"] == []
    manifest = storage.read_json(f"s3://{bucket}/{next(k for k in data if k.endswith('manifest.json'))}")
    assert manifest["probe"]["source"] == "train" and manifest["trained_langs"] == ["de", "en", "zh"]
    assert manifest["probe"]["disjoint_from_test"]["mgsm"]["shared_question_texts"] == 0

    # what the demo prints: real data, the model URI, the loss curve read back from the MLflow server
    assert "Data: s3://" in printed and f"base s3://{bucket}/models/smollm2 vs SLAM" in printed
    assert summary["loss"]["steps"] == 4 and summary["loss"]["first"] > 0 and summary["loss"]["last"] > 0
    assert "slam data build (before the DAG)" in summary["steps_s"]
    assert summary["version"] == "1"

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("real-path")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert {r.data.tags.get("slam.step") for r in runs} >= {"eval"}
    assert any(r.data.tags.get("slam.delta_uri", "").startswith(prefix) for r in runs)
