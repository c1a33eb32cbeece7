"""Components and the steps behind them: pointer artifacts, a component run alone under kfp.local,
and the kuberay launch target wired to the RayJob launcher (fake Kubernetes API, real S3 server).

    .venv/bin/python -m pytest -q tests/test_components.py
"""

import base64
import json
from types import SimpleNamespace

import pytest


class FakeArtifact:
    """What KFP hands a component: a path and a metadata dict (and Metrics.log_metric)."""

    def __init__(self, path, name="a"):
        self.path, self.name, self.metadata = str(path), name, {}

    def log_metric(self, k, v):
        self.metadata[k] = v


def test_publish_then_read_pointer_round_trip(tmp_path):
    from components import io

    ptr, met, md, html = (FakeArtifact(tmp_path / n, n) for n in ("ptr", "met", "md", "html"))
    png = b"\x89PNG fake"
    result = {"uri": "s3://b/x/probe.json", "outputs": {"selected_layers": "1,2", "seconds": 3.5, "big": [1]},
              "metrics": {"acc_de": 0.5, "skip": None}, "markdown": "# t", "figures": {"Heatmap <1>": png}}
    io.publish(result, ptr, metrics=met, markdown=md, html=html)
    assert ptr.metadata == {"uri": "s3://b/x/probe.json", "selected_layers": "1,2", "seconds": 3.5}
    assert json.loads((tmp_path / "ptr").read_text())["uri"] == "s3://b/x/probe.json"
    assert met.metadata == {"acc_de": 0.5}
    assert (tmp_path / "md").read_text() == "# t"
    page = (tmp_path / "html").read_text()
    assert "Heatmap &lt;1&gt;" in page and "data:image/png;base64," + base64.b64encode(png).decode() in page
    assert io.read_pointer(ptr) == "s3://b/x/probe.json"
    ptr.metadata = {}  # metadata lost (e.g. an importer): the pointer file still says where
    assert io.read_pointer(ptr) == "s3://b/x/probe.json"
    (tmp_path / "empty").write_text("{}")
    from slam.errors import SlamError

    with pytest.raises(SlamError, match="carries no storage URI"):
        io.read_pointer(FakeArtifact(tmp_path / "empty"))


@pytest.mark.parametrize("text, expected, error", [
    ("en,de, zh", ["en", "de", "zh"], None),
    ("", [], None),
    ("en,de,en", None, "duplicate"),
])
def test_split_list(text, expected, error):
    from slam.config import split_list
    from slam.errors import SlamError

    if error:
        with pytest.raises(SlamError, match=error):
            split_list(text, "languages")
    else:
        assert split_list(text, "languages") == expected


def test_step_keys_are_deterministic_and_input_sensitive():
    from slam import steps
    from slam.config import split_overrides

    a = steps.step_key("probe", model="m", langs=["en", "de"], k=6)
    assert a == steps.step_key("probe", k=6, langs=["en", "de"], model="m")
    assert a != steps.step_key("probe", model="m", langs=["en", "de"], k=4)
    assert split_overrides("train.lr=1e-4; train.max_steps=5\ntune.asha=false") == \
        ["train.lr=1e-4", "train.max_steps=5", "tune.asha=false"]


def test_unknown_launcher_and_missing_model_are_one_line_errors(tmp_path):
    from slam.errors import SlamError
    from slam.launch import get_launcher
    from slam.models import resolve_model

    with pytest.raises(SlamError, match="unknown launcher 'slurm'"):
        get_launcher("slurm")
    with pytest.raises(SlamError, match="base model not found"):
        resolve_model(str(tmp_path / "nope"))


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task")
def test_prepare_data_component_alone_under_kfp_local(tmp_path):
    from kfp import local

    from components.prepare_data import prepare_data

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    kw = dict(languages="en,de", train_data="", synth_problems=12, synth_seed=3, storage=str(tmp_path / "store"),
              languages_uri="", registry_name="slam", mlflow_uri="", experiment="slam", pipeline_run_id="",
              pipeline_run_name="")
    task = prepare_data(**kw)
    assert task.outputs["Output"] == "en,de"   # the languages the rest of the pipeline uses
    ds = task.outputs["dataset"]
    uri = ds.metadata["uri"]
    assert uri.startswith(str(tmp_path / "store" / "data"))
    assert {"train.jsonl", "val.jsonl", "test.jsonl", "probe.jsonl", "manifest.json"} <= \
        {p.name for p in (tmp_path / "store" / "data").rglob("*.jsonl")} | {"manifest.json"}
    summary = open(task.outputs["summary"].path).read()
    assert "Training data" in summary and "| de | 12 | 12 |" in summary   # a table per language and split
    again = prepare_data(**kw)  # same inputs, same place (reused, not rewritten)
    assert again.outputs["dataset"].metadata["uri"] == uri


def test_kuberay_target_launches_a_rayjob_and_reattaches(s3_bucket, tmp_path):
    """The kuberay target: config and step spec travel to S3, the entrypoint is the constant
    `python -m slam.launch.entry`, the RayJob name is the step key's, and a second launch of the same step
    re-attaches (no second RayJob)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_launch import FakeClock, FakeCustomObjects

    from slam import storage
    from slam.config import load_config
    from slam.data.synth import synth
    from slam.launch import get_launcher
    from slam.train import delta_uri

    data = f"{s3_bucket}/data"
    synth(data, langs=["en", "de"], n_train=4, n_val=2, n_test=2, n_probe=2, seed=0)
    cfg = load_config(None, ["train.max_steps=3"]).replace(
        model={"path": f"{s3_bucket}/models/base"}, data={"train": data}, train={"layers": [0, 1]},
        storage={"root": f"{s3_bucket}/runs"})
    delta = delta_uri(cfg.storage.root, cfg)
    storage.write_text(storage.join(delta, storage.SUCCESS), "{}")  # what the job would have written
    api, clock = FakeCustomObjects(script=[("Initializing", ""), ("Running", "RUNNING"), ("Complete", "SUCCEEDED")] * 2), FakeClock()
    target = get_launcher("kuberay", namespace="slam", api=api, core_api=None, poll_s=1.0, clock=clock,
                          sleep=clock.sleep)
    out = target.train(cfg, step="train", key="abc123def456")
    assert out["delta_uri"] == delta
    ((ns, name), job), = api.objects.items()
    assert ns == "slam" and name.startswith("slam-train-abc123def456")
    from slam.launch.entry import ENTRYPOINT, read_spec

    assert job["spec"]["entrypoint"] == ENTRYPOINT
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    spec_uri = next(e["value"] for e in head["env"] if e["name"] == "SLAM_STEP_SPEC")
    argv = read_spec(spec_uri)
    assert argv[:2] == ["train", "--config"] and argv[2].startswith(s3_bucket)
    assert load_config(argv[2]) == cfg  # the pods get exactly this config
    assert argv[3:] == ["--storage", cfg.storage.root]

    target.train(cfg, step="train", key="abc123def456")
    assert api.calls.count("create") == 1 and len(api.objects) == 1


def test_kuberay_target_refuses_local_storage(tmp_path):
    from slam.config import SlamConfig
    from slam.errors import SlamError
    from slam.launch import get_launcher

    cfg = SlamConfig().replace(model={"path": "s3://b/m"}, data={"train": str(tmp_path)}, train={"layers": [0]},
                               storage={"root": str(tmp_path)})
    with pytest.raises(SlamError, match="needs an s3:// storage prefix"):
        get_launcher("kuberay", api=SimpleNamespace(), namespace="x")._run(cfg, "train", "k", ["train"], {})
