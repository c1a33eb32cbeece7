"""New-language retraining as a flow, end to end at reduced size: a location with one folder per language is
watched by the pipeline (what each tick of `slam pipeline schedule ... languages_uri=…` runs, here through
kfp.local): the first tick trains a champion on de,fr (+en); a tick with nothing new stops after the
data step; sw data arrives; the next tick trains on de,fr,sw and the gate decides per language, with the
table written to the new model version.

    .venv/bin/python -m pytest -q tests/test_new_language.py        # integration: kfp.local, Ray, MLflow
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_list_and_build_language_folders(tmp_path):
    from slam.data.build import read_examples, read_manifest
    from slam.data.langdirs import (
        build_from_languages,
        fingerprint,
        list_languages,
        write_synthetic_languages,
    )
    from slam.errors import SlamError

    root = tmp_path / "languages"
    write_synthetic_languages(str(root), ["en", "de"], n_train=12, n_test=4, n_probe=4)
    (root / "xx-notes").mkdir()
    (root / "fr").mkdir()                      # a folder still being uploaded: no train.jsonl yet
    assert list_languages(str(root)) == ["de", "en"]
    before = fingerprint(str(root), ["de", "en"])
    manifest = build_from_languages(str(root), str(tmp_path / "ds"))
    assert manifest["langs"] == ["de", "en"] and manifest["records"]["test"] == {"de": 4, "en": 4}
    assert {r["lang"] for r in read_examples(str(tmp_path / "ds"), "train")} == {"de", "en"}
    assert read_manifest(str(tmp_path / "ds"))["languages_root"] == str(root)
    write_synthetic_languages(str(root), ["fr"], n_train=12, n_test=4, n_probe=4)
    assert list_languages(str(root)) == ["de", "en", "fr"] and fingerprint(str(root), ["de", "en"]) == before
    # a new language is parallel to the others: same problems, same ids
    de = [json.loads(x)["problem_id"] for x in (root / "de" / "train.jsonl").read_text().splitlines()]
    fr = [json.loads(x)["problem_id"] for x in (root / "fr" / "train.jsonl").read_text().splitlines()]
    assert de == fr
    with pytest.raises(SlamError, match="no train.jsonl for sw"):
        build_from_languages(str(root), str(tmp_path / "ds2"), ["sw"])


def test_champion_on_de_fr_then_sw_arrives_and_the_gate_decides_per_language(tmp_path):
    from mlflow import MlflowClient

    from pipeline.local import run_local, task_outputs
    from slam import storage
    from slam.data.build import read_examples
    from slam.data.langdirs import write_synthetic_languages
    from slam.gate import Evidence, decide
    from slam.testing import save_tiny
    from slam.tracking import embedded_tracking_uri

    languages = tmp_path / "languages"
    sizes = dict(n_train=24, n_test=4, n_probe=4)
    write_synthetic_languages(str(languages), ["en", "de", "fr"], **sizes)
    texts = [r["question"] + " " + (r.get("answer") or "") for lang in ("en", "de", "fr")
             for r in storage.read_jsonl(str(languages / lang / "train.jsonl"))]
    model = save_tiny(tmp_path / "model", "llama", num_layers=4, texts=texts)
    uri = embedded_tracking_uri(tmp_path / "mlflow")
    tick = {  # the parameters a `slam pipeline schedule` recurring run would carry, at reduced size
        "base_model": str(model), "languages_uri": str(languages), "storage": str(tmp_path / "storage"),
        "mlflow_uri": uri, "registry_name": "slam-watch", "gate_margin": 1.0, "k_grid": "2",
        "probe_questions": 4, "probe_top_k": 2, "eval_limit": 4, "eval_max_new_tokens": 8,
        "train_overrides": ["train.max_steps=2", "train.engine=torch", "train.micro_batch_size=2",
                            "train.val_max_examples=4", "data.max_length=512"], "tune_overrides": []}
    client = MlflowClient(uri)

    # tick 1: no champion yet -> train on de,fr (+en), register version 1 as champion
    run1 = task_outputs(run_local(tick, tmp_path / "kfp")["run_dir"])
    assert run1["prepare-data"]["parameters"]["Output"] == "de,en,fr"
    assert run1["register-model"]["parameters"]["alias"] == "champion"
    v1 = client.get_model_version("slam-watch", "1")
    assert v1.tags["slam.trained_languages"] == "de,en,fr" and v1.tags["slam.eval_languages"] == "de,en,fr"

    # tick 2: nothing new -> the pipeline stops after the data step, no training, no version
    run2 = task_outputs(run_local(tick, tmp_path / "kfp")["run_dir"])
    assert set(run2) == {"prepare-data"} and run2["prepare-data"]["parameters"]["Output"] == ""
    assert len(client.search_model_versions("name = 'slam-watch'")) == 1

    # sw data arrives; tick 3 trains on de,fr,sw and the gate compares per language on the union
    write_synthetic_languages(str(languages), ["sw"], **sizes)
    third = run_local(tick, tmp_path / "kfp")
    run3 = task_outputs(third["run_dir"])
    assert run3["prepare-data"]["parameters"]["Output"] == "de,en,fr,sw"
    data_uri = run3["prepare-data"]["artifacts"]["dataset"]["uri"]
    assert {r["lang"] for r in read_examples(data_uri, "train")} == {"de", "en", "fr", "sw"}
    v2 = client.get_model_version("slam-watch", "2")
    assert v2.tags["slam.trained_languages"] == "de,en,fr,sw" and v2.tags["slam.eval_languages"] == "de,en,fr,sw"
    reports = {run3[t]["artifacts"]["report"]["label"]: storage.read_json(run3[t]["artifacts"]["report"]["uri"])
               for t in run3 if t.startswith("evaluate")}
    expected = decide(Evidence.from_reports(reports["slam"], reports["base"]), Evidence.from_tags(dict(v1.tags)), 1.0)
    assert v2.tags["slam.gate"] == f"{'champion' if expected.promote else 'challenger'}: {expected.reason}"
    assert "new language" in v2.tags["slam.gate.sw"] and "vs base" in v2.tags["slam.gate.sw"]
    for lang in ("en", "de", "fr", "sw"):
        assert f"| {lang} |" in v2.description              # the per-language table, on the version
    assert "## Gate" in v2.description
    champion = str(client.get_model_version_by_alias("slam-watch", "champion").version)  # an int from a sqlite store
    assert champion == ("2" if expected.promote else "1")
    reg = run3["register-model"]["parameters"]
    assert reg["version"] == "2" and reg["alias"] == ("champion" if expected.promote else "challenger")
    card = (tmp_path / "kfp" / third["run_dir"] / "register-model" / "card").read_text()  # the KFP Markdown
    assert "## Gate, per language" in card and "| sw |" in card
