"""The step specs the KubeRay target writes (argv for `python -m slam.launch.entry`) must parse with the real CLI."""

import pytest

from slam.cli import build_parser
from slam.config import SlamConfig
from slam.launch.entry import check_argv
from slam.launch.kuberay import KubeRayLauncher


@pytest.mark.parametrize("step", ["train", "tune"])
def test_rayjob_step_specs_parse_with_the_real_cli(step, s3_bucket, monkeypatch):
    seen = {}

    def fake_run(self, cfg, step_, key, argv, outputs):
        seen["argv"], seen["outputs"] = argv, outputs

    monkeypatch.setattr(KubeRayLauncher, "_run", fake_run)
    monkeypatch.setattr("slam.storage.read_json", lambda uri: {"rows": []} if "results" in uri else {"k": 2})
    cfg = SlamConfig().replace(storage={"root": s3_bucket + "/runs"}, model={"path": "s3://models/base"},
                               train={"layers": [0, 1]})
    getattr(KubeRayLauncher("slam", api=object()), step)(cfg, step=step, key="abc123")
    argv = check_argv(seen["argv"])  # what the entrypoint accepts
    args = build_parser().parse_args(argv)
    assert args.command == step and args.config.startswith(s3_bucket) and args.storage == s3_bucket + "/runs"
    assert all(uri.startswith("s3://") for uri in seen["outputs"].values())
