"""Tracking: the do-nothing stand-in, find-or-create by run key, nesting under one pipeline run, bounded
retries for calls that need an answer, training that survives a 60 s outage of a real MLflow server
(metrics buffered, then flushed), and `slam runs compare` agreeing with the server's REST API.

    .venv/bin/python -m pytest -q tests/test_tracking.py
"""

from __future__ import annotations

import json
import pickle
import socket
import time
import urllib.request

import pytest

from slam.config import TrackingConfig
from slam.errors import SlamError
from slam.tracking import MlflowTracker, NullTracker, embedded_tracking_uri, get_tracker, pipeline_key


@pytest.fixture(scope="module")
def embedded_uri(tmp_path_factory) -> str:
    """One embedded sqlite store per module: creating one costs ~3 s of schema migrations."""
    return embedded_tracking_uri(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture()
def embedded(embedded_uri, request, monkeypatch) -> MlflowTracker:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = get_tracker(TrackingConfig(uri=embedded_uri, experiment=request.node.name))
    assert isinstance(t, MlflowTracker)
    return t


def test_no_uri_gives_the_do_nothing_tracker(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = get_tracker(TrackingConfig())
    assert isinstance(t, NullTracker) and not t.enabled
    with t.run("x", key="k") as run:
        run.log_params({"a": 1})
        run.log_metrics({"loss": 1.0}, step=3)
        run.log_artifact(tmp_path / "missing-is-fine-here")
        run.set_tags({"t": "v"})
        assert run.id == ""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/x.db")
    assert isinstance(get_tracker(TrackingConfig()), MlflowTracker)


def test_nested_runs_params_metrics_artifacts(embedded, tmp_path, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "kfp-123")
    art = tmp_path / "summary.md"
    art.write_text("# probe\n")
    with embedded.run("pipeline", key=pipeline_key("demo")) as parent:
        with embedded.run("probe", key="probe-1", parent_run_id=parent.id, tags={"slam.step": "probe"}) as run:
            run.log_params({"k": 4, "layers": [3, 5, 7, 9], "lr": 1e-4})
            for step, loss in [(1, 2.0), (2, 1.5)]:
                run.log_metrics({"train_loss": loss}, step=step)
            run.log_artifact(art, "probe")
            run.log_dict({"scores": [0.1, 0.2]}, "probe/probe.json")
    c = embedded.client
    assert pipeline_key("demo") == "kfp-123"
    r = c.get_run(run.id)
    assert r.data.tags["mlflow.parentRunId"] == parent.id
    assert r.data.tags["kfp.run_id"] == "kfp-123" and r.data.tags["slam.step"] == "probe"
    assert r.data.params == {"k": "4", "layers": "[3, 5, 7, 9]", "lr": "0.0001"}
    assert [m.value for m in c.get_metric_history(run.id, "train_loss")] == [2.0, 1.5]
    assert sorted(f.path for f in c.list_artifacts(run.id, "probe")) == ["probe/probe.json", "probe/summary.md"]
    assert r.info.status == "FINISHED"


def test_steps_of_one_pipeline_run_share_one_parent(embedded_uri, monkeypatch):
    cfg = TrackingConfig(uri=embedded_uri, experiment="pipeline-parent", parent="pipeline/kfp-777")
    get_tracker(cfg).pipeline_run("kfp-777", name="slam-2026-11-29")
    ids = []
    for step in ("probe", "train", "eval"):  # each step is its own pod: a fresh tracker
        with get_tracker(cfg).run(step, key=f"kfp-777/{step}", background=step == "train") as run:
            pass
        ids.append(run.id)
    monkeypatch.setenv("KFP_RUN_ID", "kfp-888")   # code without a config: the env names the pipeline run
    with get_tracker(TrackingConfig(uri=embedded_uri, experiment="pipeline-parent")).run("x", key="x") as other:
        pass
    t = get_tracker(cfg)
    runs = t.client.search_runs([t.experiment_id])
    parents = {r.data.tags.get("slam.run_key"): r for r in runs if r.data.tags.get("slam.step") == "pipeline"}
    assert set(parents) == {"pipeline/kfp-777", "pipeline/kfp-888"}
    assert parents["pipeline/kfp-777"].info.run_name == "slam-2026-11-29"
    pid = parents["pipeline/kfp-777"].info.run_id
    children = {r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == pid}
    assert children == set(ids)
    assert all(t.client.get_run(i).data.tags["kfp.run_id"] == "kfp-777" for i in ids)
    assert t.client.get_run(other.id).data.tags["mlflow.parentRunId"] == parents["pipeline/kfp-888"].info.run_id
    # an explicit parent still wins (a Tune trial nests under its search, not directly under the pipeline)
    with t.run("trial", key="trial-1", parent_run_id=ids[1]) as trial:
        pass
    assert t.client.get_run(trial.id).data.tags["mlflow.parentRunId"] == ids[1]
    t.set_pipeline_status(pid, "FINISHED")
    info = t.client.get_run(pid).info
    assert info.status == "FINISHED" and info.end_time and info.end_time >= info.start_time  # the UI's Duration


def test_same_key_reattaches_instead_of_duplicating(embedded):
    with embedded.run("train", key="train-abc") as first:
        first.log_params({"lr": 0.1})
        first.log_metrics({"loss": 3.0}, step=1)
    # a Ray restart / re-run of the step: same key -> same run, same params accepted again
    with embedded.run("train", key="train-abc") as again:
        again.log_params({"lr": 0.1})
        again.log_metrics({"loss": 2.0}, step=2)
    assert again.id == first.id
    runs = embedded.client.search_runs([embedded.experiment_id], "tags.`slam.run_key` = 'train-abc'")
    assert len(runs) == 1
    with embedded.run("train", key="train-abc") as third:
        with pytest.raises(SlamError, match="different values for params lr"):
            third.log_params({"lr": 0.2})


def test_an_experiment_note_replaces_slams_generic_note_but_never_a_users(embedded, embedded_uri):
    import uuid

    from slam.tracking import EXPERIMENT_TAGS, NOTE_TAG

    client = embedded.client
    assert client.get_experiment(embedded.experiment_id).tags[NOTE_TAG] == EXPERIMENT_TAGS[NOTE_TAG]
    embedded.describe_experiment("a study")
    assert client.get_experiment(embedded.experiment_id).tags[NOTE_TAG] == "a study"
    name = f"users-own-{uuid.uuid4().hex[:8]}"  # the store is shared by the module (and by a rerun)
    theirs = client.create_experiment(name, tags={NOTE_TAG: "our team's notes"})
    get_tracker(TrackingConfig(uri=embedded_uri, experiment=name)).describe_experiment("another study")
    assert client.get_experiment(theirs).tags[NOTE_TAG] == "our team's notes"
    NullTracker().describe_experiment("nothing to write to")


def test_exception_marks_run_failed_and_propagates(embedded):
    with pytest.raises(ZeroDivisionError):
        with embedded.run("eval", key="eval-1") as run:
            raise ZeroDivisionError("boom")
    assert embedded.client.get_run(run.id).info.status == "FAILED"


def test_tracker_pickles_for_ray_workers(embedded):
    with embedded.run("p", key="p") as run:
        pass
    clone = pickle.loads(pickle.dumps(embedded))
    assert clone.find_run("p").info.run_id == run.id


def test_unreachable_server_gives_bounded_retries_then_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = MlflowTracker(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.05)
    start = time.time()
    with pytest.raises(SlamError, match=r"after 3 attempts") as e:
        with t.run("x", key="k"):
            pass
    assert time.time() - start < 20
    assert "\n" not in str(e.value) and f"127.0.0.1:{port}" in str(e.value)


# --------------------------------------------------------------------------------------------------
# Against a real MLflow server


@pytest.mark.integration
def test_registration_calls_are_bounded_when_the_server_is_down(mlflow_server, mlflow_uri, tmp_path):
    """Calls that need an answer (registration) retry 0.5+1+2 s, then a one-line error; the step re-attaches."""
    t = get_tracker(TrackingConfig(uri=mlflow_uri, experiment="outage", retries=2))
    t.backoff_s = 0.1
    with pytest.raises(SlamError, match="after 3 attempts"):
        with t.run("register", key="outage-register") as run:
            run.log_metrics({"x": 2.0}, step=1)
            mlflow_server.stop()
            start = time.time()
            try:
                run.log_metrics({"x": 1.0}, step=2)
            finally:
                elapsed = time.time() - start
    assert elapsed < 30, f"retries were not bounded: {elapsed:.1f} s"
    mlflow_server.start()
    with t.run("register", key="outage-register") as again:
        again.log_metrics({"x": 3.0}, step=3)
    assert again.id == run.id and t.client.get_run(run.id).info.status == "FINISHED"


@pytest.mark.integration
def test_training_survives_a_60_s_mlflow_outage_and_its_metrics_arrive(mlflow_server, mlflow_uri, tmp_path,
                                                                      monkeypatch):
    """Regression (15.8): retries totalled ~3.5 s and the loop logged at every report, so an MLflow outage
    killed training. Now: the server is stopped for 60 s mid-training, training goes on and ends while it is
    down, and every metric point reaches MLflow once it is back."""
    import threading

    from test_train import make_dataset

    from slam.config import load_config
    from slam.testing import save_tiny
    from slam.train import batches, train_local

    data, texts = make_dataset(tmp_path / "data")
    model = save_tiny(tmp_path / "model", "llama", num_layers=4, texts=texts)
    steps = 20
    cfg = load_config(None, [f"model.path={model}", f"data.train={data}", "train.layers=[1,2]",
                             f"train.max_steps={steps}", "train.micro_batch_size=4", "train.engine=torch",
                             f"tracking.uri={mlflow_uri}", "tracking.experiment=outage-train",
                             "tracking.outage_wait_s=300", "train.run_name=outage-run"])
    real = batches.micro_batches
    outage: dict[str, float] = {}
    trained = threading.Event()

    def step_hook(n, step, **kw):  # the server goes down at step 5, mid-training
        if step == 5:
            mlflow_server.stop()
            outage["down"] = time.time()
        if step == steps:
            outage["last_step"] = time.time()
            trained.set()
        return real(n, step, **kw)

    def restore():  # back after >= 60 s, and only once training has ended: it all ran during the outage
        trained.wait(1800)
        time.sleep(max(0.0, 60 - (time.time() - outage.get("down", time.time()))))
        mlflow_server.start()
        outage["up"] = time.time()

    monkeypatch.setattr(batches, "micro_batches", step_hook)
    restorer = threading.Thread(target=restore)
    restorer.start()
    metrics = train_local(cfg, str(tmp_path / "runs"))    # returns once the buffered logs are sent
    restorer.join()
    assert metrics["step"] == steps and metrics["delta_uri"]
    assert outage["down"] < outage["last_step"] < outage["up"] and outage["up"] - outage["down"] >= 60

    t = get_tracker(cfg.tracking)
    run = t.find_run("outage-run")
    assert run.info.status == "FINISHED"
    hist = t.client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in hist) == list(range(1, steps + 1))   # every step once, none lost
    during = [m for m in hist if outage["down"] * 1000 < m.timestamp < outage["up"] * 1000]
    assert len(during) >= steps - 5       # logged (timestamped) while the server was down, sent afterwards
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss"} <= set(run.data.metrics)
    assert "attempts" not in run.data.metrics and run.data.tags["slam.attempts"] == "1"  # constants: tags


@pytest.mark.integration
def test_runs_compare_matches_the_rest_api(mlflow_uri, capsys):
    from slam.cli import main
    from slam.compare import compare_runs

    cfg = TrackingConfig(uri=mlflow_uri, experiment="compare")
    t = get_tracker(cfg)
    pid = t.pipeline_run("kfp-cmp", name="slam-cmp")
    for label, de, en in (("base", 0.0, 12.5), ("slam", 25.0, 20.8)):
        with t.run(f"eval-{label}", key=f"kfp-cmp/eval-{label}", parent_run_id=pid,
                   tags={"slam.step": "eval", "slam.label": label}) as run:
            run.log_metrics({"acc/synthetic/de": de, "acc/synthetic/en": en, "acc/synthetic/avg_non_en": de})
            if label == "slam":
                run.log_params({"k": 6, "layers": "2,11,13"})
                run.log_metrics({"delta/synthetic/de": 25.0, "base/synthetic/de": 0.0})
    with t.run("other", key="other") as other:
        other.log_metrics({"acc/synthetic/de": 99.0})
    rows = {r["run"]: r for r in compare_runs(cfg, pipeline_run=pid)}
    assert set(rows) == {"eval-base", "eval-slam"}          # one pipeline run's steps only
    assert rows["eval-slam"]["de"] == 25.0 and rows["eval-slam"]["Δ de"] == 25.0 and rows["eval-slam"]["k"] == "6"
    assert rows["eval-base"]["en"] == 12.5 and "Δ de" not in rows["eval-base"]

    body = json.dumps({"experiment_ids": [t.experiment_id], "max_results": 100}).encode()
    req = urllib.request.Request(f"{mlflow_uri}/api/2.0/mlflow/runs/search", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        api = {r["info"]["run_name"]: r for r in json.load(resp)["runs"]}
    for name, row in rows.items():
        metrics = {m["key"]: m["value"] for m in api[name]["data"].get("metrics", [])}
        assert {f"acc/synthetic/{k}": v for k, v in row.items() if k in ("de", "en", "avg_non_en")} == \
            {k: v for k, v in metrics.items() if k.startswith("acc/")}

    assert main(["runs", "compare", "--experiment", "compare", "--tracking-uri", mlflow_uri]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:2] == ["run", "step"] and "en" in header and "de" in header and header.index("en") < header.index("de")
    assert "eval-slam" in out and "25.0" in out and "+25.0" in out and "other" in out
    assert main(["runs", "compare", "--experiment", "nope", "--tracking-uri", mlflow_uri]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err
