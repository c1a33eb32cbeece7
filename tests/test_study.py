"""`slam study`: arms and their layers, paired bootstrap statistics, and a whole tiny study that resumes
after an interruption with its arms as MLflow runs under one parent.

    .venv/bin/python -m pytest -q tests/test_study.py
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from slam.errors import SlamError
from slam.study.plan import StudyConfig, check, plan_units
from slam.study.stats import bootstrap_indices, in_format, mean_ci, paired_ci, seed_draws

REPORT = {"scores": [0.0, 0.1, 0.9, 0.8, 0.2, 0.7, 0.1, 0.0], "probe_selected_layers": [2, 3, 5],
          "selected_layers": [0, 1, 2], "fallback": "bottom-k", "stable": False}


def test_units_cover_every_arm_with_the_layers_each_policy_picks():
    units = plan_units(StudyConfig(k=3, seeds=3), REPORT)
    by = {u.name: u for u in units}
    assert [u.name for u in units][0] == "base-0" and len(units) == 1 + 8 * 3
    assert by["probe-0"].layers == [2, 3, 5]                  # the probe's own choice, even when unstable
    assert by["slam-en-only-1"].layers == [0, 1, 2] and by["slam-en-only-1"].data_langs == ["en"]
    assert by["bottom-k-2"].layers == [0, 1, 2] and by["top-layers-0"].layers == [5, 6, 7]
    assert [u.name for u in units][1:10] == [f"{a}-0" for a in ("probe", "bottom-k", "random-k", "top-layers", "full",
                                                                 "two-stage", "bottom-k-long", "slam-en-only")] + ["probe-1"]
    assert by["bottom-k-long-1"].layers == [0, 1, 2] and by["bottom-k-long-1"].steps == 2 * by["bottom-k-1"].steps == 120
    assert plan_units(StudyConfig(seeds=1, long_steps=90), REPORT)[7].steps == 90
    draws = {tuple(by[f"random-k-{i}"].layers) for i in range(3)}
    assert len(draws) == 3                                      # a new draw per repetition
    assert by["full-0"].layers is None and by["two-stage-0"].method == "two-stage"
    assert {u.lr for u in units if u.arm != "base"} == {2e-4}                 # full_lr 0: every arm at lr
    # a stable probe: the probe arm trains its choice, English-only the pipeline's default (bottom-k)
    stable = {u.name: u for u in plan_units(StudyConfig(k=3, seeds=1), {**REPORT, "stable": True, "fallback": None})}
    assert stable["probe-0"].layers == [2, 3, 5] and stable["slam-en-only-0"].layers == [0, 1, 2]


def test_full_parameter_arms_train_at_their_own_lr_and_the_rest_at_lr():
    from slam.study.plan import train_overrides

    by = {u.name: u for u in plan_units(StudyConfig(k=3, seeds=1, lr=2e-4, full_lr=2e-5), REPORT)}
    assert by["full-0"].lr == by["two-stage-0"].lr == 2e-5
    assert {by[f"{a}-0"].lr for a in ("probe", "bottom-k", "random-k", "top-layers", "bottom-k-long",
                                      "slam-en-only")} == {2e-4}
    assert "train.lr=2e-05" in train_overrides(StudyConfig(), by["full-0"], "d", "u", "k")
    assert "train.lr=0.0002" in train_overrides(StudyConfig(), by["bottom-k-0"], "d", "u", "k")


def test_a_study_dir_takes_more_arms_and_seeds_and_settings_added_since_at_their_default(tmp_path):
    from slam.study.plan import to_json
    from slam.study.run import _claim

    def old_style(**kw):  # study.json as a slam without the long_steps setting wrote it
        d = json.loads(to_json(StudyConfig(**kw)))
        del d["long_steps"], d["full_lr"]
        (tmp_path / "study.json").write_text(json.dumps(d))

    old_style(arms=["base", "bottom-k"], seeds=2)
    _claim(tmp_path, StudyConfig(arms=["base", "bottom-k", "full"], seeds=3))      # extends it
    assert json.loads((tmp_path / "study.json").read_text())["arms"] == ["base", "bottom-k", "full"]
    with pytest.raises(SlamError, match=r"\(full_lr, lr differ"):  # full_lr 0 follows lr
        _claim(tmp_path, StudyConfig(arms=["base", "bottom-k", "full"], lr=1e-3))
    old_style(arms=["base", "bottom-k"])
    _claim(tmp_path, StudyConfig(arms=["base", "bottom-k-long"], long_steps=90))  # nothing trained with it yet
    old_style(arms=["base", "bottom-k-long"])
    _claim(tmp_path, StudyConfig(arms=["base", "bottom-k-long"], long_steps=120))  # = the old default, 2 x 60
    old_style(arms=["base", "bottom-k-long"])
    with pytest.raises(SlamError, match=r"\(long_steps differ"):
        _claim(tmp_path, StudyConfig(arms=["base", "bottom-k-long"], long_steps=90))
    # full_lr (added later): a study whose full arm trained at lr may not switch it; one without may set it
    old_style(arms=["base", "full"])
    _claim(tmp_path, StudyConfig(arms=["base", "full"], full_lr=2e-4))           # = lr, what it trained with
    with pytest.raises(SlamError, match=r"\(full_lr differ"):
        _claim(tmp_path, StudyConfig(arms=["base", "full"], full_lr=2e-5))
    old_style(arms=["base", "bottom-k"])
    _claim(tmp_path, StudyConfig(arms=["base", "bottom-k", "two-stage"], full_lr=2e-5))


def test_report_shows_the_study_s_current_arms_and_seeds_only(tmp_path, capsys):
    """A dir that dropped an arm or a seed keeps those units' files; `slam study report` leaves them out,
    like `slam study run` does."""
    from slam.cli import main
    from slam.study.plan import to_json

    rng = np.random.default_rng(0)

    def unit(arm, rep):
        per_lang = {lg: {"ids": [f"q{i}" for i in range(20)], "correct": list(map(int, rng.random(20) < 0.4)),
                         "format": [1] * 20} for lg in ("en", "de")}
        return {"arm": arm, "rep": rep, "layers": None if arm in ("base", "full") else [0, 1, 2],
                "trainable": 0 if arm == "base" else 10, "trainable_fraction": 0.0 if arm == "base" else 0.1,
                "train_seconds": 1.0, "tasks": {"synthetic": {"per_lang": per_lang}}}

    (tmp_path / "study.json").write_text(to_json(StudyConfig(langs=["en", "de"], arms=["base", "bottom-k"], seeds=1,
                                                             n_boot=50)))
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "probe.json").write_text(json.dumps(REPORT))
    (tmp_path / "units").mkdir()
    for arm, rep in (("base", 0), ("bottom-k", 0), ("bottom-k", 1), ("full", 0)):
        (tmp_path / "units" / f"{arm}-{rep}.json").write_text(json.dumps(unit(arm, rep)))
    assert main(["study", "report", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "| bottom-k | 1 |" in table and "| full |" not in table and "| base | 1 |" in table


@pytest.mark.parametrize("kw,match", [({"arms": ["base", "lora"]}, "unknown arm"), ({"arms": ["probe"]}, "include base"),
                                      ({"seeds": 0}, "seeds must be"),
                                      ({"long_steps": -1}, "long_steps must be >= 0"), ({"full_lr": -1e-5}, "full_lr must be"),
                                      ({"langs": ["de", "fr"]}, "include en")])
def test_bad_study_settings_are_one_clear_error(kw, match):
    with pytest.raises(SlamError, match=match):
        check(StudyConfig(**kw))


def test_answer_format():
    assert in_format("3 + 5 = 8. The answer is 8.") and in_format("The answer is -1,234.5")
    assert not in_format("8") and not in_format("The answer is eight.")


def test_paired_bootstrap_is_narrower_than_unpaired_and_covers_the_truth():
    rng = np.random.default_rng(0)
    n = 200
    base = (rng.random(n) < 0.3).astype(float)
    arm = base.copy()
    flip = rng.choice(n, 20, replace=False)
    arm[flip] = 1.0                                              # +<=10 points on the same questions
    idx = bootstrap_indices(n, 2000, seed=0)
    d, lo, hi = paired_ci(arm, base, idx)
    assert lo <= d <= hi and lo > 0                              # a paired gain this size is detected
    _, alo, ahi = mean_ci(arm, idx)
    _, blo, bhi = mean_ci(base, idx)
    assert (hi - lo) < 0.5 * ((ahi - alo) + (bhi - blo))          # pairing removes the shared question noise


def test_seeds_that_disagree_widen_the_interval_and_one_seed_changes_nothing():
    """Training noise is in the interval: two seeds at 20% and 60% are not a precise 40%."""
    rng = np.random.default_rng(1)
    n = 200
    arm = np.stack([(rng.random(n) < 0.2), (rng.random(n) < 0.6)]).astype(float)
    idx = bootstrap_indices(n, 2000, seed=0)
    _, qlo, qhi = mean_ci(arm, idx)                                    # questions only: about +-5 points
    m, lo, hi = mean_ci(arm, idx, seed_draws(2, 2000, seed=3))
    assert lo <= m <= hi and hi - lo > 2 * (qhi - qlo) and lo < 0.25 and hi > 0.55
    agree = np.stack([arm[1], arm[1]])                                 # seeds that agree: no wider
    _, alo, ahi = mean_ci(agree, idx, seed_draws(2, 2000, seed=3))
    _, olo, ohi = mean_ci(arm[1], idx)
    assert np.isclose(ahi - alo, ohi - olo)
    assert mean_ci(arm[1], idx, seed_draws(1, 2000, seed=0)) == mean_ci(arm[1], idx)   # one seed: questions only
    base = (rng.random(n) < 0.2).astype(float)
    d, dlo, dhi = paired_ci(arm, base, idx, seed_draws(2, 2000, seed=3), seed_draws(1, 2000, seed=4))
    assert dlo < 0.05 and dhi > 0.35                                   # +20 points on average, but one seed was +0


@pytest.mark.parametrize("stable,ref", [(False, "bottom-k"), (True, "probe")])
def test_english_only_control_is_compared_with_the_arm_that_trains_its_layers(stable, ref):
    """slam-en-only trains what the pipeline does (bottom-k by default; a study from a slam that defaulted to
    top-k trained the probe's layers when the probe was stable). Its comparison (is it the languages or the answer format?) is against that arm on every language."""
    from slam.study.report import markdown, summarize

    rng = np.random.default_rng(1)
    pipeline_layers = [2, 3, 5] if stable else [0, 1, 2]
    layers = {"base": None, "probe": [2, 3, 5], "bottom-k": [0, 1, 2], "slam-en-only": pipeline_layers}

    def unit(arm):
        per_lang = {lg: {"ids": [f"q{i}" for i in range(20)], "correct": list(map(int, rng.random(20) < 0.4)),
                         "format": [1] * 20} for lg in ("en", "de")}
        return {"arm": arm, "rep": 0, "layers": layers[arm], "trainable": 0 if arm == "base" else 10,
                "trainable_fraction": 0.0 if arm == "base" else 0.1, "train_seconds": 1.0,
                "tasks": {"synthetic": {"per_lang": per_lang}}}

    report = {**REPORT, "stable": stable, "selected_layers": pipeline_layers}
    units = [unit(a) for a in layers] + [{**unit("bottom-k"), "rep": 1}]
    summary = summarize(StudyConfig(langs=["en", "de"], n_boot=100), report, units)
    names = [n for n in summary["comparisons"] if n.startswith("synthetic: slam-en-only")]
    assert names == [f"synthetic: slam-en-only - {ref} (non-en)"]
    assert "bottom-k - random-k" not in " ".join(summary["comparisons"])  # no random-k arm, no comparison
    assert f"slam-en-only - {ref}" in markdown(summary)
    per_seed = [ln for ln in markdown(summary).splitlines() if ln.startswith("Non-English accuracy per seed")]
    assert len(per_seed) == 1 and "bottom-k " in per_seed[0] and "probe" not in per_seed[0]  # arms with > 1 seed


@pytest.mark.integration
def test_tiny_study_runs_resumes_and_logs_every_arm(tmp_path, monkeypatch):
    from slam.data.build import read_examples
    from slam.data.synth import synth
    from slam.study import run as study_run
    from slam.study import run_study
    from slam.testing import save_tiny

    data = tmp_path / "w"
    synth(str(data), langs=["en", "de", "zh"], n_train=40, n_val=8, n_test=6, n_probe=8, seed=0)
    texts = [r["instruction"] + " " + r["response"] for r in read_examples(str(data), "train")]
    model = save_tiny(tmp_path / "m", "llama", num_layers=4, texts=texts)
    cfg = StudyConfig(model=str(model), data=str(data), langs=["en", "de", "zh"], k=2, seeds=1, steps=2, full_lr=1e-5,
                      questions=6, max_new_tokens=8, probe_questions=8, n_boot=200,
                      arms=["base", "probe", "bottom-k", "random-k", "two-stage", "slam-en-only"])
    out = tmp_path / "study"
    real = study_run._run_unit
    calls = []

    def flaky(cfg_, unit, *a, **kw):  # the study is interrupted in its 3rd unit
        calls.append(unit.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cfg_, unit, *a, **kw)

    monkeypatch.setattr(study_run, "_run_unit", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, str(out))
    assert len(list((out / "units").glob("*.json"))) == 2
    from slam.cli import main

    assert main(["study", "report", "--out", str(out)]) == 0      # the table of the units finished so far
    assert "| probe | 1 |" in (out / "table.md").read_text() and (out / "study.png").is_file()
    summary = run_study(cfg, str(out))                         # resumes: only the remaining units run
    assert calls[3:] == [n for n in ["bottom-k-0", "random-k-0", "two-stage-0", "slam-en-only-0"]]
    # a finished unit keeps its delta, not its checkpoints (a 25-unit study's filled the disk: 45 GB)
    train = out / "train"
    assert len(list(train.glob("*/delta"))) == 5 and not list(train.glob("*/checkpoints"))  # two-stage: stage 2's
    t = summary["tasks"]["synthetic"]
    assert t["n"] == {"en": 6, "de": 6, "zh": 6}
    assert set(t["arms"]) == {"base", "probe", "bottom-k", "random-k", "two-stage", "slam-en-only"}
    for a in t["arms"].values():
        assert a["ci"]["de"][0] <= a["acc"]["de"] <= a["ci"]["de"][1]
    assert summary["arms"]["two-stage"]["train_seconds"] > 0 and summary["arms"]["base"]["trainable"] == 0
    for f in ("table.md", "study.png", "summary.json"):
        assert (out / f).is_file()
    assert "Δ en vs base" in (out / "table.md").read_text()
    assert "| two-stage | 1 | 100.0% | 1e-05 |" in (out / "table.md").read_text()
    with pytest.raises(SlamError, match=r"other settings \(steps differ"):
        run_study(StudyConfig(**{**cfg.__dict__, "steps": 3}), str(out))
    # another arm extends the finished study: only its unit runs, the rest is reused
    summary = run_study(StudyConfig(**{**cfg.__dict__, "arms": cfg.arms + ["top-layers"]}), str(out))
    assert calls[7:] == ["top-layers-0"] and "top-layers" in summary["tasks"]["synthetic"]["arms"]

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("slam-study")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("slam.step") == "study"]
    arms = [r for r in runs if r.data.tags.get("slam.step") == "study-arm"]
    assert len(parent) == 1 and len(arms) == 7
    assert parent[0].data.tags["slam.study.arms"].endswith(",slam-en-only,top-layers")
    assert exp.tags["mlflow.note.content"].startswith("A SLAM ablation study")   # not the pipeline's note
    links = summary["mlflow"]                       # the comparison the CLI prints: every arm run, no other
    assert links["runs_url"].endswith(f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning")
    from urllib.parse import unquote
    assert sorted(json.loads(unquote(links["compare_url"].split("runs=")[1].split("&")[0]))) == \
        sorted(r.info.run_id for r in arms)
    assert all(r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id for r in arms)
    assert "synthetic_acc_de" in arms[0].data.metrics
    layers = {r.data.params["arm"]: r.data.params["layers"] for r in arms}
    assert layers["base"] == "none" and layers["two-stage"] == "all" and layers["bottom-k"] == "0,1"
    lrs = {r.data.params["arm"]: float(r.data.params["lr"]) for r in arms}
    assert lrs["two-stage"] == 1e-5 and lrs["bottom-k"] == cfg.lr
    # what the trainer itself ran at: both stages of two-stage at full_lr, the SLAM arms at lr
    trained = {r.data.tags.get("mlflow.runName"): float(r.data.params["train.lr"]) for r in runs
               if r.data.tags.get("slam.step") == "train"}
    assert sorted(lr for name, lr in trained.items() if "stage" in name) == [1e-5, 1e-5], trained
    assert {lr for name, lr in trained.items() if "stage" not in name} == {cfg.lr}, trained
    json.loads((out / "summary.json").read_text())
