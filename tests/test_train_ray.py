"""Real Ray Train V2 on CPU: 2 DeepSpeed ZeRO-2 workers killed mid-run resume from the last checkpoint; S3 storage.

Module-scoped: the S3 server starts before Ray so the workers inherit AWS_ENDPOINT_URL; Ray is shut
down at the end. Each fit costs ~15-25 s of worker start-up on this 2-core box.
"""

import json

import pytest

from slam.config import load_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_world(tmp_path_factory, s3_server):
    import os

    import ray
    from test_train import make_dataset

    from slam.testing import save_tiny

    root = tmp_path_factory.mktemp("rayworld")
    # the model cache the Ray workers resolve s3:// models into (workers inherit it when Ray starts)
    old_cache = os.environ.get("SLAM_MODELS_DIR")
    os.environ["SLAM_MODELS_DIR"] = str(root / "model-cache")
    data, texts = make_dataset(root / "data")
    model = save_tiny(root / "model", "llama", num_layers=4, texts=texts)
    yield model, data
    ray.shutdown()
    if old_cache is None:
        os.environ.pop("SLAM_MODELS_DIR", None)
    else:
        os.environ["SLAM_MODELS_DIR"] = old_cache


def cfg_for(world, *overrides):
    model, data = world
    return load_config(None, [f"model.path={model}", f"data.train={data}", "train.layers=[1,2]",
                              "train.max_steps=6", "train.lr=1e-2", "train.micro_batch_size=2",
                              "train.checkpoint_every=2", "train.report_every=1", "train.num_workers=2",
                              "train.max_failures=1", *overrides])


def test_killed_worker_resumes_from_last_checkpoint_with_deepspeed_zero2(ray_world, tmp_path, monkeypatch):
    import torch

    from slam.delta import load_model_with_delta
    from slam.distributed.train import fit
    from slam.models import load_model

    monkeypatch.setenv("SLAM_FAIL_AT_STEP", "5")
    result = fit(cfg_for(ray_world, "train.engine=deepspeed", "train.zero_stage=2"), storage=str(tmp_path))
    m = result.metrics
    assert (m["step"], m["attempts"], m["resumed_from_step"], m["world_size"]) == (6, 2, 4, 2)
    assert (tmp_path / result.run_name / "faults" / "step-5").is_file()
    # the final checkpoint carries the whole loss history: every step exactly once, in order
    state = json.loads((tmp_path / result.run_name / result.checkpoint.rsplit("/", 1)[-1] /
                        "trainer_state.json").read_text())
    assert [h["step"] for h in state["history"]] == [1, 2, 3, 4, 5, 6]
    assert all(h["train_loss"] > 0 for h in state["history"])
    # ZeRO-2 shards from both ranks landed in the same checkpoint
    ds = list((tmp_path / result.run_name / result.checkpoint.rsplit("/", 1)[-1] / "ds" / "ckpt").iterdir())
    assert {p.name for p in ds} >= {"zero_pp_rank_0_mp_rank_00_optim_states.pt",
                                    "zero_pp_rank_1_mp_rank_00_optim_states.pt"}
    # frozen tensors are bit-identical to the base
    model, _ = load_model_with_delta(ray_world[0], result.delta_uri, device="cpu")
    base = dict(load_model(ray_world[0], device="cpu").named_parameters())
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, base[n])}
    assert changed == {f"model.layers.{i}.mlp.{r}_proj.weight" for i in (1, 2) for r in ("up", "down")}


def test_s3_storage_checkpoints_and_delta(ray_world, s3_bucket):
    from slam import storage
    from slam.delta import load_model_with_delta, read_manifest
    from slam.distributed.train import fit

    result = fit(cfg_for(ray_world, "train.engine=torch", "train.num_workers=1", "train.max_steps=3",
                         "train.checkpoint_every=0"), storage=f"{s3_bucket}/runs")
    assert result.delta_uri == f"{s3_bucket}/runs/{result.run_name}/delta"
    assert storage.exists(f"{result.delta_uri}/_SUCCESS")
    assert read_manifest(result.delta_uri)["step"] == 3
    bucket = s3_bucket[len("s3://"):]
    assert result.checkpoint.startswith(f"{bucket}/runs/{result.run_name}/checkpoint_")
    assert storage.exists(f"s3://{result.checkpoint}/trainer_state.json")
    load_model_with_delta(ray_world[0], result.delta_uri, device="cpu")


def test_a_model_on_s3_is_resolved_inside_the_ray_workers(ray_world, s3_bucket):
    """Regression: the base model URI (s3://, pypi:) was resolved only in the pipeline step, so Ray workers
    and RayJob pods got a URI they could not load. Every worker resolves it now, into a per-node cache
    keyed by the objects' ETags; two workers starting at once download it once."""
    import os
    from pathlib import Path

    from slam import storage
    from slam.delta import base_fingerprint, read_manifest
    from slam.distributed.train import fit

    model_dir, _ = ray_world
    model_uri = storage.publish_dir(model_dir, f"{s3_bucket}/models/tiny")
    result = fit(cfg_for(ray_world, f"model.path={model_uri}", "train.engine=torch", "train.max_steps=2",
                         "train.checkpoint_every=0"), storage=f"{s3_bucket}/runs")
    m = read_manifest(result.delta_uri)
    assert m["base"]["path"] == model_uri  # the URI travels; the fingerprint is of the bytes behind it
    assert m["base"]["weights_sha"] == base_fingerprint(model_dir)["weights_sha"]
    cached = [p for p in Path(os.environ["SLAM_MODELS_DIR"]).iterdir() if p.name.startswith("s3-")]
    assert len(cached) == 1 and (cached[0] / "config.json").is_file()


@pytest.mark.slow
def test_worker_errors_become_one_line_slam_errors(ray_world, tmp_path):
    from slam.distributed.train import fit
    from slam.errors import SlamError

    with pytest.raises(SlamError, match="failed: rank 0: .*out of range"):
        fit(cfg_for(ray_world, "train.layers=[9]", "train.num_workers=1", "train.max_failures=0"),
            storage=str(tmp_path))
