"""Experiment tracking: MLflow when a tracking URI is configured, a do-nothing stand-in otherwise.

    tracker = get_tracker(cfg.tracking)            # cfg.tracking.uri or MLFLOW_TRACKING_URI, else NullTracker
    with tracker.run("pipeline", key=pipeline_key("demo")) as parent:
        with tracker.run("train", key=f"{parent.id}/train", parent_run_id=parent.id) as run:
            run.log_params({"lr": 1e-4, "layers": [0, 1]})
            run.log_metrics({"train_loss": 1.2}, step=10)
            run.log_artifact("eval.png", "eval")

When KFP_RUN_ID (or SLAM_PIPELINE_RUN_ID) is set, every run without an explicit parent nests under one
`pipeline-<id>` run, shared by all steps (pods) of that pipeline run. Runs are found-or-created by the tag `slam.run_key`: a Ray worker restart or a re-run of a pipeline step
re-attaches to its run instead of adding a duplicate. We use `MlflowClient` with explicit run ids, never
the fluent active-run stack, so threads and Ray workers cannot mix up runs. Every MLflow call gets
bounded retries with exponential backoff (cfg.tracking.retries), then a one-line `SlamError`; callers
write their results to storage first, so an MLflow outage never loses them. Log from rank 0 only
(other ranks get a `NullTracker`).
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

from slam.config import TrackingConfig
from slam.errors import SlamError
from slam.redact import redact

log = logging.getLogger(__name__)

RUN_KEY_TAG = "slam.run_key"
PARENT_TAG = "mlflow.parentRunId"
# Env vars that identify the orchestrator run; copied onto every run as tags when present.
PIPELINE_ENV_TAGS = {
    "KFP_RUN_ID": "kfp.run_id",
    "KFP_RUN_NAME": "kfp.run_name",
    "SLAM_PIPELINE_RUN_ID": "slam.pipeline_run_id",
    "RAY_JOB_ID": "ray.job_id",
}
# MLflow's own error codes that mean "try again later" (a down server surfaces as INTERNAL_ERROR).
_RETRYABLE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
_MAX_PARAM_LEN = 6000

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


def _param_value(v: Any) -> str:
    """What MLflow stores for a param/tag value: JSON for non-strings, credentials redacted (a tracking URI
    with user:password@, a key=secret inside an override string), cut to MLflow's limit."""
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return redact(s)[:_MAX_PARAM_LEN]


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

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass


class NullTracker:
    """Same methods as `MlflowTracker`; every run is a `NullRun`."""

    enabled = False
    uri = ""

    @contextlib.contextmanager
    def run(self, name: str, key: str, tags: dict | None = None,
            parent_run_id: str | None = None) -> Iterator[NullRun]:
        yield NullRun()

    def find_run(self, key: str) -> None:
        return None


# --------------------------------------------------------------------------------------------------
# MLflow


class MlflowRun:
    """One MLflow run addressed by id; every call goes through the tracker's bounded retries."""

    def __init__(self, tracker: MlflowTracker, run_id: str, name: str) -> None:
        self._t = tracker
        self.id = run_id
        self.name = name

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in params.items() if v is not None]
        # Re-attached runs re-log the same params: skip those already there (MLflow rejects changed values).
        existing = self._t._call("get run", self._t.client.get_run, self.id).data.params
        changed = [p.key for p in items if p.key in existing and existing[p.key] != p.value]
        if changed:
            raise SlamError(f"MLflow run {self.id} ({self.name}) already has different values for params "
                            f"{', '.join(changed)}: use a new run key for a changed config")
        items = [p for p in items if p.key not in existing]
        for i in range(0, len(items), 100):  # MLflow's log_batch limit is 100 params
            self._t._call("log params", self._t.client.log_batch, self.id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(str(k), float(v), ts, int(step or 0)) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(items), 1000):
            self._t._call("log metrics", self._t.client.log_batch, self.id, metrics=items[i:i + 1000])

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        p = Path(local_path)
        if not p.exists():
            raise SlamError(f"cannot log artifact {p}: no such file or directory")
        fn = self._t.client.log_artifacts if p.is_dir() else self._t.client.log_artifact
        self._t._call(f"log artifact {p.name}", fn, self.id, str(p), artifact_path)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory(prefix="slam-track-") as tmp:
            f = Path(tmp) / Path(artifact_file).name
            f.write_text(json.dumps(obj, indent=2, default=str))
            parent = str(Path(artifact_file).parent)
            self.log_artifact(f, None if parent == "." else parent)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _param_value(v)) for k, v in tags.items() if v is not None]
        if items:
            self._t._call("set tags", self._t.client.log_batch, self.id, tags=items)


class MlflowTracker:
    """MLflow tracking through `MlflowClient` with explicit run ids and bounded retries."""

    enabled = True

    def __init__(self, uri: str, experiment: str = "slam", retries: int = 3, backoff_s: float = 0.5,
                 parent_run_id: str = "") -> None:
        self.uri = uri
        self.parent_run_id = parent_run_id
        self.experiment = experiment
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._client = None
        self._experiment_id: str | None = None
        self._pipeline_run_id: str | None = None

    def __getstate__(self) -> dict:  # picklable into Ray workers: the client is rebuilt there
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            # Our retries are the bounded ones: MLflow's HTTP layer would otherwise retry 7 times with
            # exponential backoff (minutes) before we see the first error.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
            from mlflow.tracking import MlflowClient

            # "Creating initial MLflow database tables..." and alembic's migration chatter are not ours to show
            for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
                if logging.getLogger(name).level < logging.WARNING:
                    logging.getLogger(name).setLevel(logging.WARNING)

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args) with `retries` retries on transient errors (backoff 0.5, 1, 2 s…), then a SlamError."""
        from mlflow.exceptions import MlflowException

        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except MlflowException as e:
                if e.error_code not in _RETRYABLE_CODES:
                    raise SlamError(redact(f"MLflow {what} failed at {self.uri}: {_first_line(e)}")) from None
                err: Exception = e
            except (OSError, ConnectionError) as e:  # requests' errors subclass OSError
                err = e
            if attempt < self.retries:
                delay = self.backoff_s * 2 ** attempt
                log.warning("MLflow %s failed (%s); retry %d/%d in %.1f s", what, redact(_first_line(err)),
                            attempt + 1, self.retries, delay)
                time.sleep(delay)
        raise SlamError(redact(f"MLflow {what} failed at {self.uri} after {self.retries + 1} attempts: "
                               f"{_first_line(err)} (results already written to storage are kept)"))

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self._call("get experiment", self.client.get_experiment_by_name, self.experiment)
            if exp is None:
                from mlflow.exceptions import MlflowException

                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment, artifact_location=self._artifact_location())
                except MlflowException:  # created meanwhile by another process
                    exp = self._call("get experiment", self.client.get_experiment_by_name, self.experiment)
                    if exp is None:
                        raise SlamError(redact(f"MLflow: cannot create experiment {self.experiment!r} at "
                                               f"{self.uri}")) from None
                    self._experiment_id = exp.experiment_id
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def _artifact_location(self) -> str | None:
        # The embedded sqlite store keeps artifacts next to its db; a server decides for itself.
        if self.uri.startswith("sqlite:///"):
            root = Path(self.uri[len("sqlite:///"):]).parent
            return (root / "artifacts" / self.experiment).resolve().as_uri()
        return None

    def find_run(self, key: str):
        """The oldest active run tagged `slam.run_key=key`, or None."""
        runs = self._call("search runs", self.client.search_runs, [self.experiment_id],
                          filter_string=f"tags.`{RUN_KEY_TAG}` = '{_quote(key)}'",
                          order_by=["attributes.start_time ASC"], max_results=10)
        return runs[0] if runs else None

    def _find_or_create(self, name: str, key: str, tags: dict[str, str]) -> str:
        found = self.find_run(key)
        if found is not None:
            if found.info.status != "RUNNING":
                self._call("reopen run", self.client.update_run, found.info.run_id, status="RUNNING")
            log.info("MLflow: re-attached to run %s (%s)", found.info.run_id, key)
            return found.info.run_id
        run = self._call("create run", self.client.create_run, self.experiment_id, run_name=name, tags=tags)
        # Two processes may have raced past find_run: keep the oldest run, delete ours if we lost.
        oldest = self.find_run(key)
        if oldest is not None and oldest.info.run_id != run.info.run_id:
            self._call("delete duplicate run", self.client.delete_run, run.info.run_id)
            return oldest.info.run_id
        return run.info.run_id

    def _pipeline_parent(self, exclude_key: str) -> str:
        """The one parent run of this orchestrator run (KFP_RUN_ID / SLAM_PIPELINE_RUN_ID), found or created."""
        run_id = os.environ.get("KFP_RUN_ID") or os.environ.get("SLAM_PIPELINE_RUN_ID")
        key = f"pipeline/{run_id}"
        if not run_id or key == exclude_key:
            return ""
        if self._pipeline_run_id is None:
            tags = {**pipeline_tags(), RUN_KEY_TAG: key, "slam.step": "pipeline"}
            self._pipeline_run_id = self._find_or_create(f"pipeline-{run_id}", key, tags)
            # steps come and go in separate pods: the parent is a container, not a process with an end
            self._call("end run", self.client.set_terminated, self._pipeline_run_id, "FINISHED")
        return self._pipeline_run_id

    @contextlib.contextmanager
    def run(self, name: str, key: str, tags: dict | None = None,
            parent_run_id: str | None = None) -> Iterator[MlflowRun]:
        """Find-or-create the run tagged `slam.run_key=key`; FINISHED on exit, FAILED on an exception."""
        if not key:
            raise SlamError(f"tracking run {name!r} needs a non-empty key")
        all_tags = {**{k: _param_value(v) for k, v in {**pipeline_tags(), **(tags or {})}.items() if v is not None},
                    RUN_KEY_TAG: key}
        parent_run_id = parent_run_id or self.parent_run_id or self._pipeline_parent(exclude_key=key)
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run_id = self._find_or_create(name, key, all_tags)
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

    Runs opened without a parent_run_id nest under cfg.parent_run_id (so a training loop inside a Tune
    trial becomes that search's nested trial run without knowing about Tune)."""
    uri = resolve_uri(tracking_cfg)
    if not uri:
        return NullTracker()
    return MlflowTracker(uri, tracking_cfg.experiment, retries=tracking_cfg.retries,
                         parent_run_id=tracking_cfg.parent_run_id)


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
