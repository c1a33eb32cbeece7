"""The commands the KubeRay target puts in a RayJob's entrypoint must parse with the real `slam` CLI."""

import shlex

import pytest

from slam.cli import build_parser
from slam.config import SlamConfig
from slam.launch.kuberay import KubeRayLauncher


@pytest.mark.parametrize("step", ["train", "tune"])
def test_rayjob_entrypoints_parse_with_the_real_cli(step, s3_bucket, monkeypatch):
    seen = {}

    def fake_run(self, cfg, step_, key, command, outputs):
        seen["command"], seen["outputs"] = command, outputs

    monkeypatch.setattr(KubeRayLauncher, "_run", fake_run)
    monkeypatch.setattr("slam.storage.read_json", lambda uri: {"rows": []} if "results" in uri else {"k": 2})
    cfg = SlamConfig().replace(storage={"root": s3_bucket + "/runs"}, model={"path": "s3://models/base"},
                                 train={"layers": [0, 1]})
    getattr(KubeRayLauncher("slam"), step)(cfg, step=step, key="abc123")
    cmd = seen["command"]
    assert cmd[:2] == ["slam", step]
    args = build_parser().parse_args(shlex.split(shlex.join(cmd))[1:])
    assert args.command == step and args.config.startswith(s3_bucket) and args.storage == s3_bucket + "/runs"
    assert all(uri.startswith("s3://") for uri in seen["outputs"].values())
