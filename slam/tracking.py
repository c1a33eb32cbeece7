"""Experiment tracking: MLflow when a tracking URI is configured, a do-nothing stand-in otherwise.

    tracker = get_tracker(cfg.tracking)            # cfg.tracking.uri or MLFLOW_TRACKING_URI, else NullTracker
    tracker.pipeline_run("8f2c…", name="slam-sw-th-20261129")      # one parent run per KFP run
    with tracker.run("eval-slam", key="8f2c…/eval-slam", parent_key="pipeline/8f2c…", background=True) as run:
        run.log_params({"max_new_tokens": 96})
        run.log_metrics({"acc/synthetic/de": 25.0}, step=0)
        run.log_artifact("eval.png", "eval")
        run.log_dataset(dataset_input("train", "s3://b/data", digest="ab12", languages=["en", "de"]))

Runs are found-or-created by the tag `slam.run_key`: a Ray worker restart or a KFP retry of a step
re-attaches to its run instead of adding a duplicate. We use `MlflowClient` with explicit run ids,
never the fluent active-run stack, so threads and Ray workers cannot mix up runs. Log from rank 0 only
(other ranks get a `NullTracker`).

Two kinds of run, one interface. A plain run calls MLflow synchronously with bounded retries (0.5, 1,
2 s), then raises a one-line `SlamError` (registration needs answers). A `background=True` run
(training, evaluation, probing) never blocks or fails its caller: calls are queued in order and sent
by one thread; while MLflow is unreachable they are buffered and retried, and flushed when it is
back (`slam.tracking_buffer`). Results are always written to storage first, so nothing depends on
MLflow being up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from slam.config import TrackingConfig
from slam.errors import SlamError

log = logging.getLogger(__name__)

RUN_KEY_TAG = "slam.run_key"
PARENT_TAG = "mlflow.parentRunId"
STEP_TAG = "slam.step"
PIPELINE_RUN_TAG = "slam.pipeline_run"      # MLflow id of the pipeline's parent run, on every step's run
TRAIN_RUN_TAG = "slam.train_run"            # MLflow id of the training run, on eval/register runs
# Env vars that identify the orchestrator run; copied onto every run as tags when present.
PIPELINE_ENV_TAGS = {
    "KFP_RUN_ID": "kfp.run_id",
    "KFP_RUN_NAME": "kfp.run_name",
    "SLAM_PIPELINE_RUN_ID": "kfp.run_id",
    "RAY_JOB_ID": "ray.job_id",
}
# MLflow's own error codes that mean "try again later" (a down server surfaces as INTERNAL_ERROR).
_RETRYABLE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
_MAX_PARAM_LEN = 6000
# The MLflow 3 UI opens an experiment in its GenAI view unless the URL says otherwise (3.17 derives the
# view from this query parameter or the browser's last choice, not from the experiment's tags).
TRAINING_VIEW = "workflowType=machine_learning"

T = TypeVar("T")


def embedded_tracking_uri(root: str | os.PathLike) -> str:
    """The demo's embedded store: `sqlite:///<root>/mlflow.db`, artifacts under `<root>/artifacts`."""
    p = Path(root).resolve()
    p.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p / 'mlflow.db'}"


def resolve_uri(cfg: TrackingConfig) -> str:
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI", "")


def pipeline_tags(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Orchestrator identity tags (KFP run id, …) from the environment, plus `extra`."""
    tags = {tag: os.environ[env] for env, tag in PIPELINE_ENV_TAGS.items() if os.environ.get(env)}
    tags.update({k: str(v) for k, v in (extra or {}).items() if v not in (None, "")})
    return tags


def pipeline_key(fallback: str) -> str:
    """Key of the one parent run per pipeline run: the KFP run id when there is one, else `fallback`."""
    return os.environ.get("KFP_RUN_ID") or os.environ.get("SLAM_PIPELINE_RUN_ID") or fallback


def ui_base(uri: str, ui_url: str = "") -> str:
    """Where a browser finds the MLflow UI for this tracking URI ('' when it cannot be known)."""
    if ui_url:
        return ui_url.rstrip("/")
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    if uri.startswith("sqlite:"):
        return "http://127.0.0.1:5000"  # what `mlflow ui --backend-store-uri <uri>` serves
    return ""


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table, opened in the training view (not MLflow 3's GenAI view)."""
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    exps = quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={exps}&{TRAINING_VIEW}"


def model_version_url(base: str, name: str, version: str) -> str:
    return f"{base}/#/models/{quote(name)}/versions/{version}?{TRAINING_VIEW}"


def _param_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return s[:_MAX_PARAM_LEN]


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def is_transient(e: BaseException) -> bool:
    """An error that means "MLflow is not reachable right now" (worth waiting for), not "you asked wrong"."""
    from mlflow.exceptions import MlflowException

    if isinstance(e, MlflowException):
        return e.error_code in _RETRYABLE_CODES
    return isinstance(e, (OSError, ConnectionError))  # requests' errors subclass OSError


def dataset_input(name: str, source: str, *, digest: str, context: str, languages: list[str] | None = None,
                  counts: Mapping[str, Any] | None = None, columns: list[str] | None = None) -> Any:
    """An MLflow dataset input (what `mlflow.log_input` records): name, digest, source URI, and a
    profile with the languages and row counts, shown in the run's Datasets panel."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    schema = {"mlflow_colspec": [{"type": "string", "name": c, "required": True} for c in columns or []]}
    profile = {"languages": ",".join(languages or []), **{k: v for k, v in (counts or {}).items()}}
    source_type = "s3" if source.startswith("s3://") else "local"
    ds = Dataset(name=name, digest=digest[:36], source_type=source_type, source=json.dumps({"uri": source}),
                 schema=json.dumps(schema), profile=json.dumps(profile, default=str))
    return DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)])


# --------------------------------------------------------------------------------------------------
# The do-nothing stand-in


class NullRun:
    """Accepts every logging call and does nothing (no tracking URI, or a non-zero rank)."""

    id = ""
    name = ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_dataset(self, dataset: Any) -> None:
        pass


class NullTracker:
    """Same methods as `MlflowTracker`; every run is a `NullRun`."""

    enabled = False
    uri = ""
    experiment_id = ""

    @contextlib.contextmanager
    def run(self, name: str, key: str, tags: dict | None = None, parent_run_id: str | None = None,
            parent_key: str | None = None, background: bool = False,
            system_metrics: bool = False) -> Iterator[Any]:
        """Find-or-create the run tagged `slam.run_key=key`; FINISHED on exit, FAILED on an exception.

        Nested under `parent_run_id`, else under the run keyed `parent_key` / cfg.tracking.parent.
        background=True: a `BufferedRun` that never blocks or raises on MLflow errors (see module doc);
        system_metrics=True (background runs): CPU/memory/disk/network/GPU as `system/…` metrics."""
        if not key:
            raise SlamError(f"tracking run {name!r} needs a non-empty key")
        pkey = "" if parent_run_id else self._parent_key(key, parent_key)
        all_tags = {**pipeline_tags(), **{k: str(v) for k, v in (tags or {}).items() if v is not None},
                    RUN_KEY_TAG: key}
        if pkey.startswith("pipeline/"):
            all_tags["kfp.run_id"] = pkey[len("pipeline/"):]
        if background:
            from slam.tracking_buffer import BufferedRun

            brun = BufferedRun(self, name, key, all_tags, parent_run_id or "", pkey, system_metrics=system_metrics)
            try:
                yield brun
            except BaseException:
                brun.close("FAILED", wait_s=min(30.0, self.outage_wait_s))
                raise
            brun.close("FINISHED", wait_s=self.outage_wait_s)
            return
        parent = parent_run_id or (self.resolve_parent(pkey) if pkey else "")
        if parent:
            all_tags[PARENT_TAG] = parent
            if pkey.startswith("pipeline/"):
                all_tags[PIPELINE_RUN_TAG] = parent
        run_id = self.find_or_create(name, key, all_tags)
        run = MlflowRun(self, run_id, name)
        try:
            yield run
        except BaseException:
            with contextlib.suppress(Exception):  # never mask the real error with a tracking error
                self.client.set_terminated(run_id, "FAILED")
            raise
        self._call("end run", self.client.set_terminated, run_id, "FINISHED")


Tracker = NullTracker | MlflowTracker


def get_tracker(tracking_cfg: TrackingConfig) -> Tracker:
    """MlflowTracker when cfg.uri or MLFLOW_TRACKING_URI is set, else the do-nothing NullTracker.

    Runs opened without a parent nest under the run keyed cfg.parent (the pipeline's run, or a Tune
    search's run for the training loop of each trial)."""
    uri = resolve_uri(tracking_cfg)
    if not uri:
        return NullTracker()
    return MlflowTracker(uri, tracking_cfg.experiment, retries=tracking_cfg.retries, parent=tracking_cfg.parent,
                         outage_wait_s=tracking_cfg.outage_wait_s)


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
