"""Ray Train V2 around `slam.train.train_loop`: N workers, checkpoints on local disk or S3, resume on failure.

    from slam.distributed.train import fit
    result = fit(cfg, num_workers=2, storage="s3://bucket/runs")          # in-process local Ray
    result = fit(cfg, num_workers=8, storage=..., ray_address="auto")      # an existing (KubeRay) cluster
    slam train --config configs/smollm2-demo.yaml --num-workers 2         # the same from the CLI

The run name is derived from the config and data fingerprints unless cfg.train.run_name is set, so a
re-run of the same config under the same storage resumes from its last checkpoint (Ray restores its
checkpoint manager from `<storage>/<name>`), and a worker failure restarts the group from the last
checkpoint up to cfg.train.max_failures times. two-stage (the QAlign baseline) runs two trainers in
sequence: stage 1 full-parameter on translation examples, stage 2 on English CoT from stage 1's weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slam import storage as storage_mod  # fit() has a `storage` argument (the agreed interface)
from slam.config import SlamConfig, to_dict
from slam.errors import SlamError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    metrics: dict[str, Any]
    """Final metrics of the (last stage's) training run."""
    delta_uri: str
    run_name: str
    run_dir: str
    """`<storage>/<run_name>`: Ray's checkpoints plus our `delta/` and `faults/`."""
    checkpoint: str | None = None
    """Path (local or bucket-relative) of the last reported checkpoint."""
    stages: list[dict[str, Any]] = field(default_factory=list)


class RaySession:
    """What train_loop needs from Ray: device, last checkpoint, report. Same calls as slam.train.local.LocalSession."""

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[Path | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield Path(d)

    def report(self, metrics: dict, checkpoint: Path | None = None, rank: int = 0) -> None:
        import ray.train

        # every rank reports (it is a barrier); DeepSpeed ranks each bring their ZeRO shard, Ray merges them
        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint is not None else None
        ray.train.report({k: v for k, v in metrics.items() if v is not None}, checkpoint=ckpt)


def _worker(config: dict[str, Any]) -> None:
    import torch

    from slam.train.loop import train_loop

    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    train_loop(config, session=RaySession())


def quiet_state_api_warnings() -> None:
    """Ray worker setup hook. Local Ray runs without the dashboard (seconds and ~200 MB saved on a laptop),
    so the State API is absent and Train's PlacementGroupCleaner warns about it every poll: hundreds of
    harmless lines per run. Only that logger is silenced; a real cluster has the dashboard and keeps it."""
    import logging

    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def init_ray(ray_address: str | None, num_cpus: int) -> None:
    """Join RAY_ADDRESS / `ray_address` (a KubeRay job, an existing cluster) or start a local Ray with num_cpus.

    The environment defaults are set before ray.init because workers get the driver's values of WORKER_ENV.
    """
    import ray

    from slam.env import apply_defaults, worker_env

    apply_defaults()
    if ray.is_initialized():
        return
    env = worker_env()
    # Inside a Ray job (KubeRay RayJob, Job Submission API) RAY_ADDRESS names the cluster: join it.
    ray_address = ray_address or os.environ.get("RAY_ADDRESS") or None
    try:
        if ray_address:
            # A submitted job (RayJob, Job Submission API) may already carry some of these env vars in its own
            # runtime env, with the values this driver inherited: Ray refuses the overlap unless told to merge.
            os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
            ray.init(address=ray_address, runtime_env={"env_vars": env}, log_to_driver=True)
        else:
            ensure_session_token()
            ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env={
                "env_vars": env, "worker_process_setup_hook": "slam.distributed.train.quiet_state_api_warnings"})
    except ray.exceptions.AuthenticationError as e:
        raise SlamError(f"Ray token authentication failed ({str(e).splitlines()[0][:160]}): give this process the "
                        "cluster's token (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH; KubeRay keeps it in the Secret named "
                        "after the RayCluster), or RAY_AUTH_MODE=disabled for a cluster that runs without auth") from None


def ensure_session_token() -> None:
    """A new local Ray cluster gets a fresh random token in this process's environment (the raylet and
    workers inherit it, nothing is written to disk) unless the user gave one (RAY_AUTH_TOKEN[_PATH],
    ~/.ray/auth_token). Only with RAY_AUTH_MODE=token, slam's default."""
    import secrets

    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    if (Path.home() / ".ray" / "auth_token").is_file():
        return
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def fit(cfg: SlamConfig, *, num_workers: int | None = None, storage: str | None = None,
        ray_address: str | None = None, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train on Ray (TorchTrainer); returns where the delta is. Failures become one-line SlamErrors."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from slam.train.runs import check_inputs, resolve_layers, run_name_for, stage_run_name, stages_for

    cfg = resolve_layers(cfg)  # decided here, once: workers train exactly these layers
    check_inputs(cfg)
    t = cfg.train
    n = num_workers or t.num_workers
    root = storage_mod.absolute(storage or cfg.storage.root)
    name = run_name_for(cfg)

    init_ray(ray_address, num_cpus=max(int(os.cpu_count() or 1), int(n * t.cpus_per_worker + 0.999)))

    done: list[dict[str, Any]] = []
    init_delta = None
    result = None
    for stage in stages_for(cfg):
        run_name = stage_run_name(name, stage)
        run_dir = storage_mod.join(root, run_name)
        if init_delta:
            stage = {**stage, "init_delta": init_delta}
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"cfg": to_dict(cfg), "run_dir": run_dir, "stage": stage,
                               "threads": max(1, int(t.cpus_per_worker))},
            scaling_config=ray.train.ScalingConfig(num_workers=n, use_gpu=t.use_gpu,
                                                   resources_per_worker={"CPU": t.cpus_per_worker}),
            run_config=ray.train.RunConfig(
                name=run_name, storage_path=root, callbacks=list(callbacks),
                failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        )
        log.info("training %s on %d Ray worker(s), storage %s", run_name, n, run_dir)
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as e:
            raise SlamError(f"training run {run_name} failed: {_first_error(e)} (logs and checkpoints under "
                            f"{run_dir})") from None
        init_delta = result.metrics.get("delta_uri") or storage_mod.join(run_dir, "delta")
        done.append({"run_name": run_name, "metrics": dict(result.metrics), "delta_uri": init_delta})
    assert result is not None
    last = done[-1]
    return TrainResult(metrics=last["metrics"], delta_uri=last["delta_uri"], run_name=last["run_name"],
                       run_dir=storage_mod.join(root, last["run_name"]),
                       checkpoint=result.checkpoint.path if result.checkpoint else None, stages=done)


def _first_error(e: BaseException) -> str:
    failures = getattr(e, "worker_failures", None) or {}
    for rank, err in sorted(failures.items()):
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        # Ray wraps the worker traceback; the last line is the original exception
        return f"rank {rank}: {lines[-1] if lines else type(err).__name__}"
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__

