"""The pipeline's steps pass decisions forward, made once: the tune step decides the layers (and the lr when
it searched lr), the train step trains exactly those; a preset's explicit train.layers wins over the probe.
Real steps, real local Ray (the `local` launcher), a tiny model.

    .venv/bin/python -m pytest -q tests/test_steps.py
"""

import json

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import ray

    from slam.data.build import read_examples
    from slam.data.synth import synth
    from slam.testing import save_tiny

    root = tmp_path_factory.mktemp("steps")
    synth(str(root / "data"), langs=["en", "de"], n_train=16, n_val=4, n_test=4, n_probe=8, seed=0)
    texts = [r["instruction"] + " " + r["response"] for r in read_examples(str(root / "data"), "train")]
    model = save_tiny(root / "model", "llama", num_layers=4, texts=texts)
    yield root, str(model), str(root / "data")
    ray.shutdown()


FAST = "train.max_steps=1;train.engine=torch;train.micro_batch_size=2;train.val_max_examples=2;data.max_length=512"


def test_preset_layers_win_over_the_probe_through_tune_and_train(world):
    """Regression: the pipeline set train.layers=None, so a preset's layers (metamath-7b: 0-5) were replaced
    by the probe's pick when run through Kubeflow."""
    from slam import steps
    from slam.delta import read_manifest

    root, model, data = world
    preset = root / "preset.yaml"
    preset.write_text("train:\n  method: slam\n  layers: [3]\n  lr: 0.003\n")
    probe = steps.probe_layers(storage=str(root / "store"), base_model=model, data_uri=data, languages="en,de",
                               top_k=2, max_questions=4)
    assert probe["outputs"]["selected_layers"] != "3"
    tune = steps.tune_layer_count(storage=str(root / "store"), base_model=model, data_uri=data,
                                  probe_uri=probe["uri"], k_grid="1,2", preset=str(preset), overrides=FAST)
    best = json.loads(open(tune["uri"]).read())["best"]
    assert best["layers"] == [3] and best["searched"] == []  # nothing searched: the preset decided
    train = steps.train_slam(storage=str(root / "store"), base_model=model, data_uri=data, probe_uri=probe["uri"],
                             tune_uri=tune["uri"], preset=str(preset), overrides=FAST)
    manifest = read_manifest(train["uri"])
    assert manifest["layers"] == [3] and manifest["lr"] == 0.003


def test_a_tuned_lr_and_layers_reach_training(world):
    """Regression: the DAG handed train only the tuned k, so a tuned lr (or selection) was silently dropped."""
    from slam import steps, storage
    from slam.delta import read_manifest

    root, model, data = world
    tune_uri = storage.write_json(str(root / "tune.json"), {"best": {
        "k": 2, "layers": [0, 2], "lr": 0.00123, "selection": "top-k", "searched": ["k", "lr"]}, "rows": []})
    probe = storage.write_json(str(root / "probe.json"), {"selected_layers": [1, 3], "scores": [0, 1, 0, 1]})
    train = steps.train_slam(storage=str(root / "store"), base_model=model, data_uri=data, probe_uri=probe,
                             tune_uri=tune_uri, overrides=FAST + ";train.lr=0.5")
    manifest = read_manifest(train["uri"])
    assert manifest["layers"] == [0, 2] and manifest["lr"] == 0.00123
    assert train["outputs"]["layers"] == "0,2"
    # an lr the search did not vary stays the train step's own (its overrides are the user's choice)
    storage.write_json(tune_uri, {"best": {"k": 2, "layers": [0, 2], "lr": 0.00123, "searched": ["k"]}, "rows": []})
    again = steps.train_slam(storage=str(root / "store"), base_model=model, data_uri=data, probe_uri=probe,
                             tune_uri=tune_uri, overrides=FAST + ";train.lr=0.5")
    assert read_manifest(again["uri"])["lr"] == 0.5


@pytest.mark.parametrize("result,says", [
    ({"best": {"k": 6}, "rows": [], "note": "one candidate, no search"}, "k = 6: one candidate, no search"),
    ({"best": {"k": 2, "metric": "val_accuracy_non_en", "value": 0.0, "tied": True},
      "rows": [{"k": 2}, {"k": 6}]}, "k = 2: every trial of k in [2, 6] scored val_accuracy_non_en = 0, no signal"),
    ({"best": {"k": 6, "metric": "val_accuracy_non_en", "value": 0.25, "tied": False},
      "rows": [{"k": 6}, {"k": 2}, {"k": 6}]}, "k = 6: Ray Tune's best of k in [2, 6] by val_accuracy_non_en (0.25)"),
])
def test_how_k_was_decided_is_said_in_one_line(result, says):
    from slam.steps import k_decision

    assert k_decision(result).startswith(says)
