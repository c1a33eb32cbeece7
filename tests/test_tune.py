"""Ray Tune over k: search points, best-trial choice and outputs (fast), and a real 2-trial search on a tiny
model with S3 storage, nested MLflow runs and a resuming re-run (integration + slow, ~2-3 min on 2 CPUs).

    .venv/bin/python -m pytest -q tests/test_tune.py
    .venv/bin/python -m pytest -q -m "integration and slow" tests/test_tune.py
"""

from __future__ import annotations

import csv
import json

import pytest

from slam.config import SlamConfig, from_dict
from slam.errors import SlamError

REPORT = {"scores": [0.1, 0.4, 0.3, 0.2], "selected_layers": [1, 2], "top_k": 2, "selection": "top-k"}


def cfg_with(**sections) -> SlamConfig:
    return from_dict(SlamConfig, sections)


def test_grid_points_take_layers_from_the_probe_report():
    from slam.distributed.tune import search_points

    cfg = cfg_with(tune={"k_grid": [1, 3], "lr_grid": [1e-4, 1e-3], "selections": ["top-k", "contiguous"]})
    points = search_points(cfg, REPORT)
    assert len(points) == 8
    by_name = {p["trial"]: p for p in points}
    assert by_name["k1-top-k-lr0.0001"]["layers"] == [1]
    assert by_name["k3-top-k-lr0.001"]["layers"] == [1, 2, 3]
    assert by_name["k1-contiguous-lr0.0001"]["layers"] == [1]
    assert by_name["k3-contiguous-lr0.0001"]["layers"] == [1, 2, 3]      # best block of 3: 0.4+0.3+0.2
    assert len(by_name) == 8                                              # trial names are unique


@pytest.mark.parametrize("probe_selection,layers", [("top-k", [1, 2]), ("contiguous", [1, 2]), ("bottom-k", [0, 1]),
                                                     ("top-layers", [2, 3])])
def test_with_no_selections_given_the_search_keeps_the_probe_s_own_selection(probe_selection, layers):
    """The probe step decided the policy (the pipeline's probe_selection); Tune varies k within it, it does not
    fall back to top-k. Given selections are searched as given."""
    from slam.distributed.tune import search_points

    report = {**REPORT, "selection": probe_selection}
    points = search_points(cfg_with(tune={"k_grid": [2]}), report)
    assert [(p["selection"], p["layers"]) for p in points] == [(probe_selection, layers)]
    assert search_points(cfg_with(tune={"k_grid": [2], "selections": ["top-layers"]}), report)[0]["layers"] == [2, 3]


def test_one_candidate_is_the_probe_s_own_selection_without_a_search(tmp_path):
    from slam.steps import _no_search

    (tmp_path / "probe.json").write_text(json.dumps({**REPORT, "selection": "bottom-k"}))
    best = _no_search(cfg_with(train={"probe": str(tmp_path / "probe.json")}), [2])["best"]
    assert best["selection"] == "bottom-k" and best["layers"] == [0, 1]


def test_random_search_is_a_seeded_sample_and_repeats_get_their_own_names():
    from slam.distributed.tune import search_points

    cfg = cfg_with(tune={"k_grid": [1, 2, 3, 4], "lr_grid": [1e-4, 1e-3], "search": "random", "num_samples": 3})
    a, b = search_points(cfg, REPORT), search_points(cfg, REPORT)
    assert [p["trial"] for p in a] == [p["trial"] for p in b] and len(a) == 3
    other_seed = search_points(cfg.replace(tune={"seed": 1}), REPORT)
    assert [p["trial"] for p in other_seed] != [p["trial"] for p in a]
    reps = search_points(cfg_with(tune={"k_grid": [2], "num_samples": 2}), REPORT)
    assert [p["trial"] for p in reps] == ["k2-top-k-lr2e-05", "k2-top-k-lr2e-05-r1"]


@pytest.mark.parametrize("metric,want", [
    ("val_loss", {"val_every": 4, "val_accuracy_every": 0, "val_accuracy_limit": 3}),
    ("val_accuracy", {"val_every": 0, "val_accuracy_every": 0, "val_accuracy_limit": 3}),
    ("val_accuracy_non_en", {"val_every": 0, "val_accuracy_every": 0, "val_accuracy_limit": 3})])
def test_trials_validate_the_tune_metric_when_it_is_used(metric, want):
    """ASHA (val_loss) compares trials on intermediate reports, so each report carries the loss; an accuracy
    ranks the final report only (no early stopping on it), so it is computed once, at the end."""
    from slam.distributed.tune import _trial_cfg

    cfg = cfg_with(tune={"metric": metric, "max_steps": 8}, train={"report_every": 4, "val_accuracy_limit": 3})
    t = _trial_cfg(cfg, {"layers": [1], "lr": 1e-3, "rep": 0, "trial": "k1"}, "tune-x", "")["train"]
    assert {k: t[k] for k in want} == want and t["max_steps"] == 8 and t["layers"] == [1]


def test_k_beyond_the_model_is_rejected():
    from slam.distributed.tune import search_points

    with pytest.raises(SlamError, match=r"\[5, 9\] outside 1..4"):
        search_points(cfg_with(tune={"k_grid": [2, 5, 9]}), REPORT)


@pytest.mark.parametrize("metric,rows,best_trial", [
    ("val_loss", [("a", 2, "complete", 1.0), ("b", 4, "complete", 0.8), ("c", 6, "stopped", 0.5)], "b"),
    ("val_loss", [("a", 2, "stopped", 1.0), ("b", 4, "stopped", 0.8)], "b"),     # nothing completed
    ("val_loss", [("a", 2, "complete", 0.8), ("b", 4, "complete", 0.8)], "a"),   # tie -> the smaller k
    ("val_accuracy", [("a", 2, "complete", 0.3), ("b", 4, "complete", 0.5), ("c", 6, "error", None)], "b"),
    ("val_accuracy_non_en", [("a", 2, "complete", 0.3), ("b", 4, "complete", 0.3)], "a"),  # tie -> smaller k
])
def test_pick_best(metric, rows, best_trial):
    from slam.distributed.tune import pick_best

    table = [{"trial": t, "k": k, "status": s, metric: v} for t, k, s, v in rows]
    assert pick_best(table, metric)["trial"] == best_trial


def test_english_guard_keeps_a_trial_that_buys_languages_with_english_from_winning():
    from slam.distributed.tune import pick_best

    rows = [{"trial": "k2", "k": 2, "status": "complete", "val_accuracy_non_en": 0.30, "val_accuracy_en": 0.40},
            {"trial": "k6", "k": 6, "status": "complete", "val_accuracy_non_en": 0.35, "val_accuracy_en": 0.20}]
    assert pick_best(rows, "val_accuracy_non_en", english_tolerance=0.05)["trial"] == "k2"
    assert pick_best(rows, "val_accuracy_non_en", english_tolerance=0.25)["trial"] == "k6"
    assert pick_best(rows, "val_accuracy_non_en")["trial"] == "k6"                 # no guard asked for


@pytest.mark.parametrize("values,tied", [
    ([0.0, 0.0], True),               # the demo's 8-step trials: no answer right anywhere
    ([0.3, 0.3, None], True),         # a failed trial does not break the tie
    ([0.0, 1 / 36], False),           # one question more is a signal
    ([0.5], False),                   # one trial: nothing to compare
    ([float("nan"), 0.2], False),
])
def test_a_search_whose_trials_all_score_the_same_is_flagged(values, tied):
    from slam.distributed.tune import all_tied

    rows = [{"trial": f"t{i}", "k": 2 * i + 2, "val_accuracy_non_en": v} for i, v in enumerate(values)]
    assert all_tied(rows, "val_accuracy_non_en") is tied


def test_pick_best_with_no_metric_is_a_clear_error():
    from slam.distributed.tune import pick_best

    with pytest.raises(SlamError, match="no Tune trial reported val_loss"):
        pick_best([{"trial": "a", "k": 2, "status": "error", "val_loss": None}], "val_loss")


def test_write_outputs(tmp_path):
    from slam.distributed.tune import write_outputs

    rows = [{"trial": f"k{k}", "k": k, "selection": "top-k", "lr": 1e-4, "layers": list(range(k)),
             "status": "complete", "steps": 4, "val_loss": 2.0 / k} for k in (2, 4)]
    write_outputs(rows, {"k": 4, "layers": [0, 1, 2, 3], "lr": 1e-4}, "val_loss", str(tmp_path / "out"))
    out = tmp_path / "out"
    assert json.loads((out / "best.json").read_text())["k"] == 4
    table = list(csv.DictReader((out / "results.csv").open()))
    assert [r["k"] for r in table] == ["2", "4"] and table[1]["layers"] == "0 1 2 3"
    assert json.loads((out / "results.json").read_text())[0]["val_loss"] == 1.0
    assert (out / "tune.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("sections,message", [
    ({"tune": {"k_grid": [2]}}, "train.probe is empty"),
    ({"train": {"probe": "p.json"}, "tune": {"metric": "val_accuracy", "val_accuracy_limit": 0}},
     r"needs tune.val_accuracy_limit \(or train.val_accuracy_limit\) > 0"),
])
def test_bad_config_fails_before_ray_starts(sections, message):
    from slam.distributed.tune import tune_search

    with pytest.raises(SlamError, match=message):
        tune_search(cfg_with(**sections))


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from slam.cli import main

    rc = main(["tune", f"train.probe={tmp_path}/missing.json", "tune.k_grid=[2]"])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.json" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# A real search


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_tune_two_trials_s3_storage_nested_runs_and_resume(tiny_model_dir, s3_bucket, tmp_path, monkeypatch,
                                                                mlflow_server):
    from mlflow import MlflowClient

    from slam import storage
    from slam.data.synth import synth
    from slam.distributed.tune import tune_search
    from slam.tracking import embedded_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    synth(str(tmp_path / "data"), langs=["en", "de"], n_train=16, n_val=4, n_test=4, n_probe=4, seed=0)
    (tmp_path / "probe.json").write_text(json.dumps(REPORT))
    uri = embedded_tracking_uri(tmp_path / "mlflow")
    cfg = cfg_with(model={"path": str(tiny_model_dir)}, data={"train": str(tmp_path / "data")},
                   train={"probe": str(tmp_path / "probe.json"), "engine": "torch", "micro_batch_size": 4,
                          "report_every": 2, "lr": 1e-2},
                   tune={"k_grid": [1, 3], "max_steps": 4, "metric": "val_loss"}, tracking={"uri": uri, "experiment": "tune-test"},
                   storage={"root": f"{s3_bucket}/runs"})
    out = tune_search(cfg)

    assert [r["k"] for r in out.rows] == [1, 3] and all(r["status"] == "complete" for r in out.rows)
    assert out.best["k"] in (1, 3) and out.best["layers"] == {1: [1], 3: [1, 2, 3]}[out.best["k"]]
    assert out.out_uri.startswith(f"{s3_bucket}/runs/")
    best = storage.read_json(storage.join(out.out_uri, "best.json"))
    assert best["k"] == out.best["k"] and storage.exists(storage.join(out.out_uri, "tune.png"))
    assert storage.exists(storage.join(best["delta_uri"], "delta.safetensors"))   # the trial's delta, on S3

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tune-test")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("slam.step") == "tune"]
    assert len(parents) == 1
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["k"] for r in trials) == ["1", "3"]
    assert len({r.data.params["trainable_fraction"] for r in trials}) == 2           # constants are params
    assert all("train/loss" in r.data.metrics and "val/loss" in r.data.metrics for r in trials)   # live curves
    assert all(r.data.tags["slam.step"] == "tune-trial" for r in trials)
    assert parents[0].data.params["best_k"] == str(out.best["k"])
    assert out.best["tied"] is False and parents[0].data.params["best_by"] == "val_loss"  # losses never tie here

    # the same search again resumes (Tuner.restore): no trial trains again, no MLflow run is duplicated
    again = tune_search(cfg)
    assert [(r["trial"], r["val_loss"]) for r in again.rows] == [(r["trial"], r["val_loss"]) for r in out.rows]
    assert len(client.search_runs([exp.experiment_id])) == len(runs)

    # MLflow goes down after the search wrote its results: the search still ends normally (its runs buffer,
    # then give up after tracking.outage_wait_s), and the results are kept
    import slam.distributed.tune as tune_mod

    real_write = tune_mod.write_outputs

    def write_then_outage(*args, **kwargs):
        real_write(*args, **kwargs)
        mlflow_server.stop()

    monkeypatch.setattr(tune_mod, "write_outputs", write_then_outage)
    storage.write_text(storage.join(out.out_uri, "best.json"), "{}")   # so we can see it rewritten
    if not mlflow_server.running:
        mlflow_server.start()
    served = cfg.replace(tracking={"uri": mlflow_server.uri, "experiment": "tune-outage", "outage_wait_s": 2})
    try:
        tune_search(served)
    finally:
        mlflow_server.start()
    assert storage.read_json(storage.join(out.out_uri, "best.json"))["k"] == out.best["k"]
