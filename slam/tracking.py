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
import functools
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

# A new experiment: the note on its overview page, and the kind that MLflow UIs which read it open in
# (3.17 ignores it and takes the view from the URL: see slam.mlflow_ui).
NOTE_TAG = "mlflow.note.content"
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    NOTE_TAG: "SLAM runs: one parent run per pipeline run with its steps nested (data, probe, tune, "
    "train, eval-base, eval-slam, register). Compare base and SLAM on the `acc/<task>/<lang>` metrics (percent); "
    "the eval-slam run also carries `base/…` and `delta/…`.",
}

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


@functools.lru_cache(maxsize=1)
def source_tags() -> dict[str, str]:
    """What produced a run: slam's version, and the git commit when slam runs from a checkout (dev, CI)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("slam")
    except PackageNotFoundError:
        v = "unknown"
    tags = {"mlflow.source.type": "JOB", "mlflow.source.name": f"slam {v}", "slam.version": v}
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and len(out.stdout.strip()) == 40:
            tags["mlflow.source.git.commit"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


def pipeline_key(fallback: str) -> str:
    """Key of the one parent run per pipeline run: the KFP run id when there is one, else `fallback`."""
    return os.environ.get("KFP_RUN_ID") or os.environ.get("SLAM_PIPELINE_RUN_ID") or fallback


def _param_value(v: Any) -> str:
    """What MLflow stores for a param/tag value: JSON for non-strings, credentials redacted (a tracking URI
    with user:password@, a key=secret inside an override string), cut to MLflow's limit."""
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return redact(s)[:_MAX_PARAM_LEN]


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
            system_metrics: bool = False) -> Iterator[NullRun]:
        yield NullRun()

    def find_run(self, key: str) -> None:
        return None

    def pipeline_run(self, kfp_run_id: str, name: str = "", call: Any = None) -> str:
        return ""

    def set_pipeline_status(self, run_id: str, status: str) -> None:
        pass

    def describe_experiment(self, note: str) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# MLflow


class TextArtifacts:
    """`log_dict` / `log_text` for any run with `log_artifact` (written to a temp file, then logged)."""

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        raise NotImplementedError

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=2, default=str), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory(prefix="slam-track-") as tmp:
            f = Path(tmp) / Path(artifact_file).name
            f.write_text(text, encoding="utf-8")
            parent = str(Path(artifact_file).parent)
            self.log_artifact(f, None if parent == "." else parent)


class MlflowRun(TextArtifacts):
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
        items = [Metric(k, v, ts, int(step or 0)) for k, v in _numeric(metrics).items()]
        for i in range(0, len(items), 1000):
            self._t._call("log metrics", self._t.client.log_batch, self.id, metrics=items[i:i + 1000])

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        p = Path(local_path)
        if not p.exists():
            raise SlamError(f"cannot log artifact {p}: no such file or directory")
        fn = self._t.client.log_artifacts if p.is_dir() else self._t.client.log_artifact
        self._t._call(f"log artifact {p.name}", fn, self.id, str(p), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _param_value(v)) for k, v in tags.items() if v is not None]
        if items:
            self._t._call("set tags", self._t.client.log_batch, self.id, tags=items)

    def log_dataset(self, dataset: Any) -> None:
        self._t._call("log dataset", self._t.client.log_inputs, self.id, datasets=[dataset])


class MlflowTracker:
    """MLflow tracking through `MlflowClient` with explicit run ids and bounded retries."""

    enabled = True

    def __init__(self, uri: str, experiment: str = "slam", retries: int = 3, backoff_s: float = 0.5,
                 parent: str = "", outage_wait_s: float = 600.0) -> None:
        self.uri = uri
        self.parent = parent
        self.experiment = experiment
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.outage_wait_s = outage_wait_s
        self._client = None
        self._experiment_id: str | None = None
        self._parents: dict[str, str] = {}

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
            except (MlflowException, OSError, ConnectionError) as e:
                if not is_transient(e):
                    raise SlamError(redact(f"MLflow {what} failed at {self.uri}: {_first_line(e)}")) from None
                err: Exception = e
            if attempt < self.retries:
                delay = self.backoff_s * 2 ** attempt
                log.debug("MLflow %s failed (%s); retry %d/%d in %.1f s", what, redact(_first_line(err)),
                          attempt + 1, self.retries, delay)
                time.sleep(delay)
        raise SlamError(redact(f"MLflow {what} failed at {self.uri} after {self.retries + 1} attempts: "
                               f"{_first_line(err)} (results already written to storage are kept)"))

    @property
    def experiment_id(self) -> str:
        return self._exp_id(self._call)

    def _exp_id(self, call: Callable) -> str:
        """The experiment's id, created on first use (`call`: bounded retries, or the background writer's one try)."""
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            exp = call("get experiment", self.client.get_experiment_by_name, self.experiment)
            if exp is not None:
                self._experiment_id = exp.experiment_id
                return self._experiment_id
            try:
                self._experiment_id = call("create experiment", self.client.create_experiment, self.experiment,
                                           artifact_location=self._artifact_location(), tags=EXPERIMENT_TAGS)
            except (MlflowException, SlamError) as e:  # created meanwhile by another process?
                exp = call("get experiment", self.client.get_experiment_by_name, self.experiment)
                if exp is None:
                    raise e
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def describe_experiment(self, note: str) -> None:
        """Put `note` on the experiment's overview page unless someone wrote their own there: slam's generic
        note (set when the experiment was created) describes pipeline runs, not, say, a study's arms."""
        exp = self._call("get experiment", self.client.get_experiment, self.experiment_id)
        if exp.tags.get(NOTE_TAG, EXPERIMENT_TAGS[NOTE_TAG]) == EXPERIMENT_TAGS[NOTE_TAG]:
            self._call("set experiment note", self.client.set_experiment_tag, self.experiment_id, NOTE_TAG, note)

    def _artifact_location(self) -> str | None:
        # The embedded sqlite store keeps artifacts next to its db; a server decides for itself.
        if self.uri.startswith("sqlite:///"):
            root = Path(self.uri[len("sqlite:///"):]).parent
            return (root / "artifacts" / self.experiment).resolve().as_uri()
        return None

    def _search_key(self, key: str, call: Callable) -> list[Any]:
        return call("search runs", self.client.search_runs, [self._exp_id(call)],
                    filter_string=f"tags.`{RUN_KEY_TAG}` = '{_quote(key)}'",
                    order_by=["attributes.start_time ASC"], max_results=10)

    def find_run(self, key: str):
        """The oldest active run tagged `slam.run_key=key`, or None."""
        runs = self._search_key(key, self._call)
        return runs[0] if runs else None

    def find_or_create(self, name: str, key: str, tags: dict[str, str], call: Callable | None = None) -> str:
        """The run tagged `slam.run_key=key` (reopened), or a new one. `call` = how to call MLflow
        (default: bounded retries; the background writer passes its own)."""
        call = call or self._call
        runs = self._search_key(key, call)
        if runs:
            found = runs[0]
            if found.info.status != "RUNNING":
                call("reopen run", self.client.update_run, found.info.run_id, status="RUNNING")
            log.debug("MLflow: re-attached to run %s (%s)", found.info.run_id, key)
            return found.info.run_id
        run = call("create run", self.client.create_run, self._exp_id(call), run_name=name,
                   tags={**source_tags(), **tags})
        # Two processes may have raced past the search: keep the oldest run, delete ours if we lost.
        runs = self._search_key(key, call)
        if runs and runs[0].info.run_id != run.info.run_id:
            call("delete duplicate run", self.client.delete_run, run.info.run_id)
            return runs[0].info.run_id
        return run.info.run_id

    def pipeline_run(self, kfp_run_id: str, name: str = "", call: Callable | None = None) -> str:
        """The one parent run of KFP run `kfp_run_id` (found or created), RUNNING while steps run."""
        if not kfp_run_id:
            return ""
        key = f"pipeline/{kfp_run_id}"
        if key not in self._parents:
            tags = {**pipeline_tags(), "kfp.run_id": kfp_run_id, RUN_KEY_TAG: key, STEP_TAG: "pipeline"}
            if name:
                tags["kfp.run_name"] = name
            self._parents[key] = self.find_or_create(name or f"pipeline-{kfp_run_id[:8]}", key, tags, call)
        return self._parents[key]

    def resolve_parent(self, key: str, call: Callable | None = None) -> str:
        """The MLflow id of the run with key `key` (created when it does not exist yet: a pipeline's parent
        run, or a Tune search's run that an outage kept from being created before its trials)."""
        if key.startswith("pipeline/"):
            return self.pipeline_run(key[len("pipeline/"):], call=call)
        if key not in self._parents:
            self._parents[key] = self.find_or_create(key.rsplit("/", 1)[-1], key, {RUN_KEY_TAG: key}, call)
        return self._parents[key]

    def set_pipeline_status(self, run_id: str, status: str) -> None:
        """FINISHED by the last step, FAILED by a failing one (a KFP retry reopens it). A final status also
        records the end time: `update_run` alone leaves it empty, and the UI's Duration column with it."""
        if not run_id:
            return
        if status in ("FINISHED", "FAILED", "KILLED"):
            self._call("set pipeline status", self.client.set_terminated, run_id, status=status)
        else:
            self._call("set pipeline status", self.client.update_run, run_id, status=status)

    def _parent_key(self, key: str, parent_key: str | None) -> str:
        """Explicit parent key, else the tracker's (cfg.tracking.parent), else KFP_RUN_ID from the env."""
        env = os.environ.get("KFP_RUN_ID") or os.environ.get("SLAM_PIPELINE_RUN_ID")
        chosen = parent_key or self.parent or (f"pipeline/{env}" if env else "")
        return "" if chosen == key else chosen

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
        all_tags = {**{k: _param_value(v) for k, v in {**pipeline_tags(), **(tags or {})}.items() if v is not None},
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
