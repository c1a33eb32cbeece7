"""A run whose logging never blocks or fails its caller: what training, evaluation and probing log through.

    with tracker.run("train", key=key, background=True, system_metrics=True) as run:
        run.log_metrics({"train/loss": 1.2}, step=10)     # returns at once, whatever MLflow is doing

Calls are queued in order and sent by one thread per run: find-or-create the run first, then params,
tags, metrics (consecutive metric calls go out as one batch), artifacts (copied to a spool dir when
queued, so the caller may delete its file), datasets. A transient error (server down, timeout) keeps
the call at the head of the queue and retries it with backoff up to 15 s, so nothing is reordered or
lost while MLflow is away and everything is flushed when it is back; each metric keeps the timestamp
of the moment it was logged. A permanent error (e.g. a param changed under the same run key) drops
that one call with a warning. Closing waits up to the tracker's `outage_wait_s` for the queue to
drain, then gives up with one warning: training results are in storage regardless.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slam.tracking import TextArtifacts

log = logging.getLogger(__name__)

MAX_QUEUED_METRICS = 200_000  # ~40 MB; beyond it the oldest buffered metric points are dropped (counted)


class BufferedRun(TextArtifacts):
    """Same calls as `slam.tracking.MlflowRun`; `id` is "" until MLflow has answered once."""

    def __init__(self, tracker: Any, name: str, key: str, tags: dict[str, str], parent_run_id: str = "",
                 parent_key: str = "", system_metrics: bool = False) -> None:
        self._t = tracker
        self.name = name
        self._key = key
        self._parent = (parent_run_id, parent_key)
        self._ops: deque[tuple[str, Any]] = deque([("start", tags)])
        self._cv = threading.Condition()
        self._closing = False
        self._abandon = False
        self._run_id = ""
        self._queued_metrics = 0
        self.dropped = 0
        self.outages = 0
        self._spool = Path(tempfile.mkdtemp(prefix="slam-mlflow-spool-"))
        self._thread = threading.Thread(target=self._drain, name=f"slam-mlflow-{name}", daemon=True)
        self._thread.start()
        self._sampler = _SystemSampler(self) if system_metrics else None

    @property
    def id(self) -> str:
        return self._run_id

    def wait_id(self, timeout: float = 30.0) -> str:
        """The run id once MLflow has created/found the run (or "" after `timeout`)."""
        deadline = time.time() + timeout
        with self._cv:
            while not self._run_id and time.time() < deadline and self._thread.is_alive():
                self._cv.wait(min(0.2, max(0.0, deadline - time.time())))
        return self._run_id

    # ---- the logging calls (all return at once) ---------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        from slam.tracking import _param_value

        items = {str(k): _param_value(v) for k, v in params.items() if v is not None}
        if items:
            self._put("params", items)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        from slam.tracking import _numeric

        ts = int(time.time() * 1000)
        items = [Metric(k, v, ts, int(step or 0)) for k, v in _numeric(metrics).items()]
        if items:
            self._put("metrics", items)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        p = Path(local_path)
        if not p.exists():
            log.warning("not logging artifact %s to MLflow: no such file or directory", p)
            return
        copy = self._spool / f"{len(os.listdir(self._spool))}" / p.name
        copy.parent.mkdir(parents=True)
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, copy)
        self._put("artifact", (copy, artifact_path))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from slam.tracking import _param_value

        items = {str(k): _param_value(v) for k, v in tags.items() if v is not None}
        if items:
            self._put("tags", items)

    def log_dataset(self, dataset: Any) -> None:
        self._put("dataset", dataset)

    def close(self, status: str = "FINISHED", wait_s: float = 600.0) -> bool:
        """End the run with `status` once everything queued is sent; wait at most `wait_s`. True = all sent."""
        if self._sampler is not None:
            self._sampler.stop()
        self._put("end", status)
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(wait_s)
        if self._thread.is_alive():
            with self._cv:
                self._abandon = True
                pending = len(self._ops)
                self._cv.notify_all()
            log.warning("MLflow at %s stayed unreachable for %.0f s after the end of run %s: %d buffered "
                        "calls were not sent (the results themselves are in storage)", self._t.uri, wait_s,
                        self.name, pending)
            return False
        shutil.rmtree(self._spool, ignore_errors=True)
        if self.dropped:
            log.warning("MLflow run %s: %d buffered metric points were dropped during the outage (buffer full)",
                        self.name, self.dropped)
        return True

    # ---- the sender thread ------------------------------------------------------------------------

    def _put(self, kind: str, payload: Any) -> None:
        with self._cv:
            if kind == "metrics":
                self._queued_metrics += len(payload)
                while self._queued_metrics > MAX_QUEUED_METRICS and self._drop_oldest_metrics():
                    pass
            self._ops.append((kind, payload))
            self._cv.notify_all()

    def _drop_oldest_metrics(self) -> bool:
        for i, (kind, payload) in enumerate(self._ops):
            if kind == "metrics" and i > 0:  # never the batch being sent
                del self._ops[i]
                self._queued_metrics -= len(payload)
                self.dropped += len(payload)
                return True
        return False

    def _next(self) -> tuple[str, Any, int] | None:
        """The head call (consecutive metric calls merged into one batch of <= 1000) and how many ops it covers."""
        with self._cv:
            while not self._ops and not self._abandon:
                if self._closing:
                    return None
                self._cv.wait(1.0)
            if self._abandon:
                return None
            kind, payload = self._ops[0]
            if kind != "metrics":
                return kind, payload, 1
            batch, n = list(payload), 1
            while n < len(self._ops) and self._ops[n][0] == "metrics" and len(batch) + len(self._ops[n][1]) <= 1000:
                batch.extend(self._ops[n][1])
                n += 1
            return kind, batch, n

    def _drain(self) -> None:
        from slam.tracking import _first_line, is_transient

        backoff, down_since = 1.0, 0.0
        while True:
            item = self._next()
            if item is None:
                return
            kind, payload, n = item
            try:
                self._send(kind, payload)
            except Exception as e:  # noqa: BLE001 - every MLflow failure is handled here, none reaches training
                if is_transient(e):
                    if not down_since:
                        down_since = time.time()
                        self.outages += 1
                        log.warning("MLflow unreachable at %s (%s): buffering run %s's logs, training goes on",
                                    self._t.uri, _first_line(e), self.name)
                    with self._cv:
                        self._cv.wait(backoff)
                    backoff = min(backoff * 2, 15.0)
                    continue
                log.warning("MLflow refused %s for run %s: %s (dropped)", kind, self.name, _first_line(e))
                if kind == "start":  # no run to log to: nothing else can be sent
                    with self._cv:
                        self._ops.clear()
                    return
            with self._cv:
                for _ in range(n):
                    k, p = self._ops.popleft()
                    if k == "metrics":
                        self._queued_metrics -= len(p)
                self._cv.notify_all()
            if down_since:
                log.warning("MLflow is back at %s after %.0f s: run %s's buffered logs are being sent",
                            self._t.uri, time.time() - down_since, self.name)
                down_since, backoff = 0.0, 1.0

    def _send(self, kind: str, payload: Any) -> None:
        from mlflow.entities import Param, RunTag

        c = self._t.client
        if kind == "start":
            from slam.tracking import PARENT_TAG, PIPELINE_RUN_TAG

            parent_id, parent_key = self._parent
            parent = parent_id or (self._t.resolve_parent(parent_key, call=_once) if parent_key else "")
            tags = {**payload, **({PARENT_TAG: parent} if parent else {}),
                    **({PIPELINE_RUN_TAG: parent} if parent and parent_key.startswith("pipeline/") else {})}
            self._run_id = self._t.find_or_create(self.name, self._key, tags, call=_once)
            with self._cv:
                self._cv.notify_all()
        elif kind == "params":
            items = [Param(k, v) for k, v in payload.items()]
            for i in range(0, len(items), 100):
                c.log_batch(self._run_id, params=items[i:i + 100])
        elif kind == "metrics":
            c.log_batch(self._run_id, metrics=payload)
        elif kind == "tags":
            c.log_batch(self._run_id, tags=[RunTag(k, v) for k, v in payload.items()])
        elif kind == "artifact":
            path, artifact_path = payload
            (c.log_artifacts if path.is_dir() else c.log_artifact)(self._run_id, str(path), artifact_path)
        elif kind == "dataset":
            c.log_inputs(self._run_id, datasets=[payload])
        elif kind == "end":
            c.set_terminated(self._run_id, payload)


def _once(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """One attempt; the sender thread does the waiting."""
    return fn(*args, **kwargs)


class _SystemSampler:
    """MLflow's own system-metric collectors (CPU, memory, disk, network, GPU when present), sampled
    every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds (default 10) into the run's queue as `system/…`."""

    def __init__(self, run: BufferedRun) -> None:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

        self.monitors: list[Any] = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
        try:  # NVIDIA GPUs, when pynvml and a driver are there
            from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

            self.monitors.append(GPUMonitor())
        except Exception:  # noqa: BLE001 - no GPU (or no NVML): CPU-side metrics only
            pass
        self.interval = float(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or 10)
        self.run = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slam-system-metrics", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        step = 0
        while not self._stop.wait(self.interval):
            metrics: dict[str, float] = {}
            for m in self.monitors:
                try:
                    m.collect_metrics()
                    metrics.update({f"system/{k}": v for k, v in m.aggregate_metrics().items()})
                    m.clear_metrics()
                except Exception:  # noqa: BLE001 - a sensor that fails must not take the run with it
                    log.debug("system metric %s failed", type(m).__name__, exc_info=True)
            self.run.log_metrics(metrics, step=step)
            step += 1

    def stop(self) -> None:
        self._stop.set()
