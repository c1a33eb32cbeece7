"""Run a `slam` step on Kubernetes as a KubeRay RayJob and wait for it.

    from slam.launch import get_launcher
    out = get_launcher("kuberay", namespace="slam").train(cfg, step="train", key=key)   # -> delta URI

    runner = RayJobRunner(client.CustomObjectsApi(), "slam", core_api=client.CoreV1Api())
    result = runner.run(build_rayjob(...))        # get-or-create, wait, log tail, outputs checked on S3

`KubeRayLauncher` is the launch target (a `slam.launch.Launcher`): it writes the step's config next to its
outputs on S3, builds the RayJob (`slam.launch.rayjob`) and hands it to `RayJobRunner`, which talks to the
Kubernetes API only (no ray import): the operator creates the cluster, submits the entrypoint and tears
it all down.

Idempotency: the name and `spec.jobId` come from the step key, and the runner gets before it creates, so
a KFP retry re-attaches to the job already running (or finished) instead of starting a second one. A
RayJob of that name with a *different* spec is refused. A *failed* one is deleted and re-created on
retry (Ray Train resumes from its checkpoints because the run name is unchanged).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slam import storage
from slam.config import SlamConfig, dump_config
from slam.errors import SlamError
from slam.launch.rayjob import (
    ANN_OUTPUTS,
    ANN_SPEC_HASH,
    GROUP,
    PLURAL,
    VERSION,
    ClusterShape,
    build_rayjob,
    rayjob_name,
    spec_hash,
)

log = logging.getLogger(__name__)

# KubeRay JobDeploymentStatus values (rayjob_types.go). Terminal: Complete, Failed (+ ValidationFailed).
DEPLOYMENT_FAILED = {"Failed", "ValidationFailed"}
JOB_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class RayJobFailed(SlamError):
    """The RayJob ended without success; the message carries KubeRay's reason/message and the last log line."""


class RayJobTimeout(SlamError):
    """The RayJob did not start or finish in time; it keeps running (activeDeadlineSeconds bounds it)."""


@dataclass
class LaunchResult:
    name: str
    job_id: str
    job_status: str
    deployment_status: str
    outputs: dict[str, str]
    reattached: bool
    elapsed_s: float
    dashboard_url: str = ""
    log_tail: list[str] = field(default_factory=list)


def _status_code(e: Exception) -> int | None:
    return getattr(e, "status", None)


def new_lines(seen: list[str], tail: list[str]) -> list[str]:
    """Lines of `tail` not already printed, given the previously seen tail (logs are re-read as tails)."""
    if not seen:
        return tail
    for k in range(min(len(seen), len(tail)), 0, -1):
        if seen[-k:] == tail[:k]:
            return tail[k:]
    return tail


class RayJobRunner:
    """Get-or-create a RayJob, poll it to the end, stream a log tail, return its outputs' URIs.

    `api` is a kubernetes `CustomObjectsApi` (anything with its get/create/delete_namespaced_custom_object
    methods); `core_api` an optional `CoreV1Api` used only to read the submitter/head pod's log.
    """

    def __init__(self, api: Any, namespace: str, *, core_api: Any = None, poll_s: float = 10.0,
                 tail_lines: int = 40, echo: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.api, self.ns, self.core = api, namespace, core_api
        self.poll_s, self.tail_lines = poll_s, tail_lines
        self.echo = echo or (lambda s: log.info("%s", s))
        self.clock, self.sleep = clock, sleep
        self._seen: list[str] = []

    # -- API helpers
    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except Exception as e:
            if _status_code(e) == 404:
                return None
            raise

    def delete(self, name: str, *, wait_s: float = 120.0) -> None:
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name,
                                                     body={"propagationPolicy": "Foreground"})
        except Exception as e:
            if _status_code(e) != 404:
                raise
        deadline = self.clock() + wait_s
        while self.get(name) is not None:
            if self.clock() > deadline:
                raise RayJobTimeout(f"RayJob {name} still exists {wait_s:.0f}s after delete (finalizers?)")
            self.sleep(min(self.poll_s, 2.0))

    def get_or_create(self, body: dict[str, Any], *, recreate_failed: bool = True) -> tuple[dict[str, Any], bool]:
        """(the RayJob object, whether it already existed). Refuses a same-named job with another spec."""
        name = body["metadata"]["name"]
        want = body["metadata"].get("annotations", {}).get(ANN_SPEC_HASH) or spec_hash(body["spec"])
        existing = self.get(name)
        if existing is not None:
            have = (existing.get("metadata", {}).get("annotations") or {}).get(ANN_SPEC_HASH)
            if have != want:
                raise SlamError(f"RayJob {name} already exists in {self.ns} with a different spec (hash {have} != {want}): "
                                f"use a new run id, or delete it: kubectl -n {self.ns} delete rayjob {name}")
            status = existing.get("status") or {}
            failed = (status.get("jobDeploymentStatus") in DEPLOYMENT_FAILED
                      or status.get("jobStatus") in ("FAILED", "STOPPED"))
            if not (failed and recreate_failed):
                self.echo(f"RayJob {name}: re-attaching to the existing job "
                          f"({status.get('jobDeploymentStatus') or 'New'}/{status.get('jobStatus') or '-'})")
                return existing, True
            self.echo(f"RayJob {name}: previous attempt failed ({status.get('reason', '')}: "
                      f"{status.get('message', '')}); deleting it and starting again")
            self.delete(name)
        try:
            created = self.api.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)
        except Exception as e:
            if _status_code(e) != 409:
                raise
            # Lost a race with a parallel retry: that one's job is ours too.
            return self.get_or_create(body, recreate_failed=False)
        self.echo(f"RayJob {name}: created in namespace {self.ns}")
        return created, False

    # -- logs
    def _log_pod(self, name: str, status: dict[str, Any]) -> str | None:
        selectors = [f"job-name={name}"]  # K8sJobMode submitter: it follows the driver's log
        if status.get("rayClusterName"):
            selectors.append(f"ray.io/cluster={status['rayClusterName']},ray.io/node-type=head")
        for sel in selectors:
            pods = self.core.list_namespaced_pod(self.ns, label_selector=sel).items
            if pods:
                newest = max(pods, key=lambda p: str(getattr(p.metadata, "creation_timestamp", "") or ""))
                return newest.metadata.name
        return None

    def stream_logs(self, name: str, status: dict[str, Any]) -> None:
        if self.core is None:
            return
        try:
            pod = self._log_pod(name, status)
            if pod is None:
                return
            text = self.core.read_namespaced_pod_log(pod, self.ns, tail_lines=self.tail_lines)
        except Exception as e:  # the pod may be starting or gone; logs are best-effort
            log.debug("no log for RayJob %s yet: %s", name, e)
            return
        tail = str(text).splitlines()
        for line in new_lines(self._seen, tail):
            self.echo(f"[{name}] {line}")
        self._seen = tail

    # -- state machine
    def wait(self, name: str, *, timeout_s: float, start_timeout_s: float) -> dict[str, Any]:
        """Poll until success (returns the object) or raise RayJobFailed / RayJobTimeout."""
        t0 = self.clock()
        last: tuple[str, str] | None = None
        started = False
        while True:
            obj = self.get(name)
            if obj is None:
                raise RayJobFailed(f"RayJob {name} disappeared from {self.ns} while waiting (deleted by someone?)")
            st = obj.get("status") or {}
            dep, job = st.get("jobDeploymentStatus") or "New", st.get("jobStatus") or ""
            if (dep, job) != last:
                url = f" dashboard={st['dashboardURL']}" if st.get("dashboardURL") else ""
                self.echo(f"RayJob {name}: {dep}/{job or '-'}{url}")
                last = (dep, job)
            self.stream_logs(name, st)
            started = started or dep in ("Running", "Complete") or job in JOB_TERMINAL | {"RUNNING"}
            if dep == "Complete" or job in JOB_TERMINAL:
                if job == "SUCCEEDED":
                    return obj
                if dep == "Complete" or job in ("FAILED", "STOPPED"):
                    raise RayJobFailed(self._failure(name, st))
            if dep in DEPLOYMENT_FAILED:
                raise RayJobFailed(self._failure(name, st))
            elapsed = self.clock() - t0
            if not started and elapsed > start_timeout_s:
                hint = " (suspended: waiting for Kueue admission?)" if dep == "Suspended" else ""
                raise RayJobTimeout(f"RayJob {name} did not start within {start_timeout_s:.0f}s: still {dep}{hint}; "
                                    f"it is left in place, re-running the step re-attaches")
            if elapsed > timeout_s:
                raise RayJobTimeout(f"RayJob {name} not finished after {timeout_s:.0f}s ({dep}/{job or '-'}); "
                                    f"it keeps running until activeDeadlineSeconds, re-running the step re-attaches")
            self.sleep(self.poll_s)

    def _failure(self, name: str, st: dict[str, Any]) -> str:
        parts = [f"RayJob {name} failed: {st.get('jobDeploymentStatus') or 'New'}/{st.get('jobStatus') or '-'}"]
        if st.get("reason"):
            parts.append(f"reason={st['reason']}")
        if st.get("message"):
            parts.append(f"message={st['message']}")
        if self._seen:
            parts.append(f"last log line: {self._seen[-1]}")
        return "; ".join(parts) + f" (kubectl -n {self.ns} describe rayjob {name})"

    def run(self, body: dict[str, Any], *, timeout_s: float | None = None, start_timeout_s: float = 1800.0,
            check_outputs: bool = True, recreate_failed: bool = True) -> LaunchResult:
        """Get-or-create `body`, wait for it, and return the S3 URIs of its outputs (checked to exist)."""
        name = body["metadata"]["name"]
        if timeout_s is None:
            timeout_s = float(body["spec"].get("activeDeadlineSeconds") or 24 * 3600) + 300
        t0 = self.clock()
        self._seen = []
        _, reattached = self.get_or_create(body, recreate_failed=recreate_failed)
        obj = self.wait(name, timeout_s=timeout_s, start_timeout_s=start_timeout_s)
        outputs = json.loads((body["metadata"].get("annotations") or {}).get(ANN_OUTPUTS) or "{}")
        if check_outputs and outputs:
            missing = [f"{k}={u}" for k, u in outputs.items()
                       if not (storage.exists(u) or storage.exists(storage.join(u, storage.SUCCESS)))]
            if missing:
                raise RayJobFailed(f"RayJob {name} succeeded but its outputs are missing: {', '.join(missing)}")
        st = obj.get("status") or {}
        return LaunchResult(name=name, job_id=obj["spec"].get("jobId", name), job_status=st.get("jobStatus", ""),
                            deployment_status=st.get("jobDeploymentStatus", ""), outputs=outputs,
                            reattached=reattached, elapsed_s=self.clock() - t0,
                            dashboard_url=st.get("dashboardURL", ""), log_tail=list(self._seen))



# --------------------------------------------------------------------------------------------------
# The launch target


class KubeRayLauncher:
    """A RayJob per step (the config travels as a YAML next to the step's outputs on S3)."""

    def __init__(self, namespace: str, *, api: Any = None, core_api: Any = None, shape: Any = None,
                 settings: Any = None, **runner_kw: Any) -> None:
        self.namespace = namespace
        self.api, self.core_api, self.shape, self.settings = api, core_api, shape, settings
        self.runner_kw = runner_kw  # poll_s / clock / sleep for RayJobRunner

    def _apis(self) -> tuple[Any, Any]:
        if self.api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self.api, self.core_api = client.CustomObjectsApi(), client.CoreV1Api()
        return self.api, self.core_api

    def _run(self, cfg: SlamConfig, step: str, key: str, command: list[str], outputs: dict[str, str]) -> LaunchResult:
        root = cfg.storage.root
        if not storage.is_s3(root):
            raise SlamError(f"launcher kuberay needs an s3:// storage prefix (pods share no disk), got {root}")
        shape = self.shape or ClusterShape(num_workers=cfg.train.num_workers,
                                           gpus_per_worker=1 if cfg.train.use_gpu else 0)
        body = build_rayjob(rayjob_name(key, step), command, shape=shape, settings=self.settings,
                            namespace=self.namespace, run_id=key, step=step, outputs=outputs)
        api, core = self._apis()
        result = RayJobRunner(api, self.namespace, core_api=core, **self.runner_kw).run(body)
        log.info("RayJob %s %s in %.0f s (%s)", result.name, result.job_status, result.elapsed_s,
                 "re-attached" if result.reattached else "created")
        return result

    def _config_uri(self, cfg: SlamConfig, step: str, key: str) -> str:
        uri = storage.join(cfg.storage.root, step, key, "config.yaml")
        storage.write_text(uri, dump_config(cfg))  # never a tracking URI's user:password@
        return uri

    def train(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        from slam.train import delta_uri, resolve_layers, run_name_for

        cfg = resolve_layers(cfg)  # the pods get the decided layers, not the probe to re-read
        delta = delta_uri(cfg.storage.root, cfg)
        self._run(cfg, step, key, ["slam", "train", "--config", self._config_uri(cfg, step, key),
                                   "--storage", cfg.storage.root], {"delta": delta})
        return {"delta_uri": delta, "metrics": {}, "run_name": run_name_for(cfg)}

    def tune(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        from slam.launch import tune_out_uri

        out_uri = tune_out_uri(cfg, step, key)
        self._run(cfg, step, key, ["slam", "tune", "--config", self._config_uri(cfg, step, key),
                                   "--storage", cfg.storage.root, "--out", out_uri,
                                   "--num-workers", str(cfg.train.num_workers)],
                  {"best": storage.join(out_uri, "best.json")})
        best = storage.read_json(storage.join(out_uri, "best.json"))
        rows = storage.read_json(storage.join(out_uri, "results.json"))
        return {"best": best, "rows": rows if isinstance(rows, list) else rows.get("rows", []), "out_uri": out_uri}
