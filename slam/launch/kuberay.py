"""Run a `slam` step on Kubernetes as a KubeRay RayJob and wait for it.

    from slam.launch import get_launcher
    out = get_launcher("kuberay", namespace="slam").train(cfg, step="train", key=key)   # -> delta URI

    runner = RayJobRunner(KubeApi.from_environment(), "slam")
    result = runner.run(build_rayjob(...))        # get-or-create, wait, log tail, outputs checked on S3

`KubeRayLauncher` is the launch target (a `slam.launch.Launcher`): it writes the step's config and step
spec next to its outputs on S3, builds the RayJob (`slam.launch.rayjob`) and hands it to `RayJobRunner`,
which talks to the Kubernetes API only (no ray import): the operator creates the cluster, submits the
constant entrypoint (`slam.launch.entry`) and tears it all down.

Idempotency: the name and `spec.jobId` come from the step key, and the runner gets before it creates, so
a KFP retry re-attaches to the job already running (or finished) instead of starting a second one. A
RayJob of that name with a *different* spec is refused. A *failed* one is deleted and re-created on
retry (Ray Train resumes from its checkpoints because the run name is unchanged).

Nothing is left behind: the RayJob is owned by the KFP step pod (ownerReference, from the downward-API
env SLAM_POD_NAME/SLAM_POD_UID the pipeline sets), so deleting the pod deletes it; SIGTERM/SIGINT
(a cancelled run) deletes it before the step exits; at its deadline (activeDeadlineSeconds, which
KubeRay only *marks*: it never stops the Ray job) or when it cannot start, the launcher deletes it.
Every API call has a timeout and bounded retries (slam.launch.kubeapi).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from slam import storage
from slam.config import SlamConfig, dump_config
from slam.errors import SlamError
from slam.launch import validate
from slam.launch.entry import write_spec
from slam.launch.kubeapi import KubeApi, status_code
from slam.launch.rayjob import (
    ANN_OUTPUTS,
    ANN_SPEC_HASH,
    GROUP,
    PLURAL,
    VERSION,
    ClusterShape,
    PodOwner,
    RayJobSettings,
    build_rayjob,
    rayjob_name,
    spec_hash,
)
from slam.retry import Retry

log = logging.getLogger(__name__)

# KubeRay JobDeploymentStatus values (rayjob_types.go). Terminal: Complete, Failed (+ ValidationFailed).
DEPLOYMENT_FAILED = {"Failed", "ValidationFailed"}
JOB_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
CANCEL_GRACE_S = 20.0  # inside Kubernetes' default 30 s terminationGracePeriodSeconds


class RayJobFailed(SlamError):
    """The RayJob ended without success; the message carries KubeRay's reason/message and the last log line."""


class RayJobTimeout(SlamError):
    """The RayJob did not start or finish in time; the launcher deleted it (nothing keeps running)."""


class StepCancelled(SlamError):
    """SIGTERM/SIGINT while waiting (a cancelled KFP run, a deleted pod): the RayJob was deleted."""

    exit_code = 143


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


def new_lines(seen: list[str], tail: list[str]) -> list[str]:
    """Lines of `tail` not already printed, given the previously seen tail (logs are re-read as tails)."""
    if not seen:
        return tail
    for k in range(min(len(seen), len(tail)), 0, -1):
        if seen[-k:] == tail[:k]:
            return tail[k:]
    return tail


@contextlib.contextmanager
def cancel_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into StepCancelled in the main thread while the block runs (elsewhere: no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise StepCancelled(f"received {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_deferred(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Cleanup must not be interrupted by a second SIGTERM (the kubelet's SIGKILL still ends it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, lambda *_: None) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class RayJobRunner:
    """Get-or-create a RayJob, poll it to the end, stream a log tail, return its outputs' URIs.

    `api` is a `KubeApi`, or a kubernetes `CustomObjectsApi` (then `core_api`, an optional `CoreV1Api`,
    is used only to read the submitter/head pod's log).
    """

    def __init__(self, api: Any, namespace: str, *, core_api: Any = None, poll_s: float = 10.0,
                 tail_lines: int = 40, echo: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 retry: Retry | None = None):
        self.kube = api if isinstance(api, KubeApi) else KubeApi(api, core_api, policy=retry, sleep=sleep, clock=clock)
        self.ns = validate.namespace(namespace)
        self.poll_s, self.tail_lines = poll_s, tail_lines
        self.echo = echo or (lambda s: log.info("%s", s))
        self.clock, self.sleep = clock, sleep
        self._seen: list[str] = []

    # -- API helpers
    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.kube.call(f"get RayJob {name}", self.kube.custom.get_namespaced_custom_object,
                                  GROUP, VERSION, self.ns, PLURAL, name)
        except Exception as e:
            if status_code(e) == 404:
                return None
            raise

    def delete(self, name: str, *, wait_s: float = 120.0) -> None:
        """Delete (Foreground: the cluster and its Ray job first) and wait until it is gone."""
        try:
            self.kube.call(f"delete RayJob {name}", self.kube.custom.delete_namespaced_custom_object,
                           GROUP, VERSION, self.ns, PLURAL, name, body={"propagationPolicy": "Foreground"})
        except Exception as e:
            if status_code(e) != 404:
                raise
        deadline = self.clock() + wait_s
        while self.get(name) is not None:
            if self.clock() > deadline:
                raise RayJobTimeout(f"RayJob {name} still exists {wait_s:.0f}s after delete (finalizers?)")
            self.sleep(min(self.poll_s, 1.0))

    def adopt(self, obj: dict[str, Any], owner: dict[str, Any] | None) -> None:
        """Add this step pod as an owner of a re-attached RayJob: a KFP retry runs in a new pod, and the
        RayJob must outlive the old one (the garbage collector deletes a dependent only when every owner
        is gone)."""
        meta = obj.get("metadata") or {}
        refs = list(meta.get("ownerReferences") or [])
        if owner is None or any(r.get("uid") == owner["uid"] for r in refs):
            return
        patch = {"metadata": {"ownerReferences": [*refs, owner], "resourceVersion": meta.get("resourceVersion")}}
        try:
            self.kube.call(f"add owner to RayJob {meta.get('name')}", self.kube.custom.patch_namespaced_custom_object,
                           GROUP, VERSION, self.ns, PLURAL, meta["name"], patch)
        except Exception as e:
            if status_code(e) not in (404, 409):  # gone or changed meanwhile: the next poll sees the truth
                raise

    def get_or_create(self, body: dict[str, Any], *, recreate_failed: bool = True) -> tuple[dict[str, Any], bool]:
        """(the RayJob object, whether it already existed). Refuses a same-named job with another spec."""
        name = body["metadata"]["name"]
        want = body["metadata"].get("annotations", {}).get(ANN_SPEC_HASH) or spec_hash(body["spec"])
        owner = (body["metadata"].get("ownerReferences") or [None])[0]
        existing = self.get(name)
        if existing is not None and not (existing.get("metadata") or {}).get("deletionTimestamp"):
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
                self.adopt(existing, owner)
                return existing, True
            self.echo(f"RayJob {name}: previous attempt failed ({status.get('reason', '')}: "
                      f"{status.get('message', '')}); deleting it and starting again")
        if existing is not None:
            self.delete(name)
        try:
            created = self.kube.call(f"create RayJob {name}", self.kube.custom.create_namespaced_custom_object,
                                     GROUP, VERSION, self.ns, PLURAL, body, field_validation="Strict")
        except Exception as e:
            if status_code(e) != 409:
                raise
            # Lost a race with a parallel retry: that one's job is ours too.
            return self.get_or_create(body, recreate_failed=False)
        self.echo(f"RayJob {name}: created in namespace {self.ns}")
        return created, False

    # -- logs (best effort: one try, short timeout, never fails the step)
    def _log_pod(self, name: str, status: dict[str, Any]) -> str | None:
        selectors = [f"job-name={name}"]  # K8sJobMode submitter: it follows the driver's log
        if status.get("rayClusterName"):
            selectors.append(f"ray.io/cluster={status['rayClusterName']},ray.io/node-type=head")
        for sel in selectors:
            pods = self.kube.core.list_namespaced_pod(self.ns, label_selector=sel,
                                                      _request_timeout=self.kube.timeout).items
            if pods:
                newest = max(pods, key=lambda p: str(getattr(p.metadata, "creation_timestamp", "") or ""))
                return newest.metadata.name
        return None

    def stream_logs(self, name: str, status: dict[str, Any]) -> None:
        if self.kube.core is None:
            return
        try:
            pod = self._log_pod(name, status)
            if pod is None:
                return
            text = self.kube.core.read_namespaced_pod_log(pod, self.ns, tail_lines=self.tail_lines,
                                                          _request_timeout=self.kube.timeout)
        except StepCancelled:
            raise
        except Exception as e:  # noqa: BLE001 - the pod may be starting or gone; logs are best-effort
            log.debug("no log for RayJob %s yet: %s", name, e)
            return
        tail = str(text).splitlines()
        for line in new_lines(self._seen, tail):
            self.echo(f"[{name}] {line}")
        self._seen = tail

    # -- state machine
    def wait(self, name: str, *, timeout_s: float, start_timeout_s: float) -> dict[str, Any]:
        """Poll until success (returns the object) or raise RayJobFailed / RayJobTimeout; a job past a
        deadline is deleted first (KubeRay would leave its Ray job running until the cluster's TTL)."""
        t0 = self.clock()
        last: tuple[str, str] | None = None
        started = False
        pause = min(1.0, self.poll_s)  # quick while things change, then every poll_s
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
                pause = min(1.0, self.poll_s)
            self.stream_logs(name, st)
            started = started or dep in ("Running", "Complete") or job in JOB_TERMINAL | {"RUNNING"}
            if job == "SUCCEEDED" and dep in ("Running", "Complete"):
                return obj
            if dep == "Complete" or job in ("FAILED", "STOPPED") or dep in DEPLOYMENT_FAILED:
                if st.get("reason") in ("DeadlineExceeded", "PreRunningDeadlineExceeded"):
                    self.delete(name)  # KubeRay never stops the Ray job for a deadline
                raise RayJobFailed(self._failure(name, st))
            elapsed = self.clock() - t0
            if not started and elapsed > start_timeout_s:
                hint = " (suspended: waiting for Kueue admission?)" if dep == "Suspended" else ""
                self.delete(name)
                raise RayJobTimeout(f"RayJob {name} did not start within {start_timeout_s:.0f}s: was {dep}{hint}; "
                                    "deleted it (re-running the step creates it again)")
            if elapsed > timeout_s:
                self.delete(name)
                raise RayJobTimeout(f"RayJob {name} not finished after {timeout_s:.0f}s ({dep}/{job or '-'}); deleted "
                                    "it, which stopped its Ray job (a re-run resumes from the last checkpoint)")
            self.sleep(pause)
            pause = min(self.poll_s, pause * 1.5)

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
        """Get-or-create `body`, wait for it, and return the S3 URIs of its outputs (checked to exist).
        SIGTERM/SIGINT meanwhile deletes the RayJob and raises StepCancelled."""
        name = body["metadata"]["name"]
        if timeout_s is None:
            timeout_s = float(body["spec"].get("activeDeadlineSeconds") or 24 * 3600) + 60
        t0 = self.clock()
        self._seen = []
        created = False
        try:
            with cancel_on_signals():
                _, reattached = self.get_or_create(body, recreate_failed=recreate_failed)
                created = True
                obj = self.wait(name, timeout_s=timeout_s, start_timeout_s=start_timeout_s)
        except StepCancelled as e:
            with signals_deferred():
                self.echo(f"RayJob {name}: {e}: deleting it")
                try:
                    self.delete(name, wait_s=CANCEL_GRACE_S)
                except SlamError as d:  # the ownerReference still deletes it with this pod
                    self.echo(f"RayJob {name}: delete on cancel did not finish: {d}")
            raise StepCancelled(f"step cancelled ({e}); RayJob {name} deleted" if created else
                                f"step cancelled ({e}) before RayJob {name} was created") from None
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


def settings_from_env(base: RayJobSettings | None = None) -> RayJobSettings:
    """RayJobSettings with what the pipeline sets on its launcher steps: SLAM_IMAGE (the image the step
    itself runs in, via RayJobSettings' default) and SLAM_RAYJOB_TTL_S (how long a finished cluster stays)."""
    s = base or RayJobSettings()
    ttl = os.environ.get("SLAM_RAYJOB_TTL_S", "")
    if ttl:
        if not ttl.isdigit():
            raise SlamError(f"SLAM_RAYJOB_TTL_S={ttl!r}: expected whole seconds")
        s = replace(s, ttl_seconds_after_finished=int(ttl))
    return s


def _check_pod_inputs(cfg: SlamConfig, key: str) -> None:
    """Every URI/name the RayJob's pods will use, checked before anything is written or created."""
    from slam.models import check_model_uri

    if storage.is_s3(cfg.storage.root):
        problems = validate.problems(**{"storage root": ("s3_uri", cfg.storage.root)})
    else:
        problems = [f"launcher kuberay needs an s3:// storage prefix (pods share no disk), got {cfg.storage.root!r}"]
    for what, uri in (("data.train", cfg.data.train), ("train.probe", cfg.train.probe)):
        if uri:
            problems += validate.problems(**{what: ("s3_uri", uri)})
    try:
        check_model_uri(cfg.model.path)
    except SlamError as e:
        problems.append(str(e))
    if not key or len(key) > 64 or not all(c.isalnum() or c in "-_." for c in key):
        problems.append(f"step key {key!r} must be 1-64 letters, digits, '-', '_' or '.'")
    if problems:
        raise SlamError("launcher kuberay: " + "; ".join(problems))


class KubeRayLauncher:
    """A RayJob per step: config + step spec as objects next to the step's outputs on S3."""

    def __init__(self, namespace: str, *, api: Any = None, core_api: Any = None, shape: Any = None,
                 settings: Any = None, owner: PodOwner | None = None, **runner_kw: Any) -> None:
        self.namespace = validate.namespace(namespace)
        self.api, self.core_api, self.shape, self.settings = api, core_api, shape, settings
        self.owner = owner
        self.runner_kw = runner_kw  # poll_s / clock / sleep / retry for RayJobRunner

    def _kube(self) -> KubeApi:
        if self.api is None:
            self.api = KubeApi.from_environment()
        if isinstance(self.api, KubeApi):
            return self.api
        kw = {k: v for k, v in self.runner_kw.items() if k in ("sleep", "clock")}
        return KubeApi(self.api, self.core_api, policy=self.runner_kw.get("retry"), **kw)

    def _pod_owner(self, kube: KubeApi) -> PodOwner | None:
        """The KFP step pod this launcher runs in (SLAM_POD_NAME/SLAM_POD_UID from the downward API),
        checked against the API: an ownerReference with a wrong UID gets the RayJob garbage-collected."""
        if self.owner is not None:
            return self.owner
        name, uid = os.environ.get("SLAM_POD_NAME", ""), os.environ.get("SLAM_POD_UID", "")
        if not (name and uid) or kube.core is None:
            return None
        owner = PodOwner(validate.subdomain(name, "SLAM_POD_NAME"), validate.uid(uid, "SLAM_POD_UID"))
        try:
            pod = kube.call(f"read pod {name}", kube.core.read_namespaced_pod, name, self.namespace)
        except SlamError:
            raise
        except Exception as e:  # noqa: BLE001 - 404: not our namespace's pod; no owner rather than a wrong one
            log.warning("not setting an owner on the RayJob: pod %s not readable (%s)", name, status_code(e) or e)
            return None
        if getattr(pod.metadata, "uid", None) != uid:
            log.warning("not setting an owner on the RayJob: pod %s has uid %s, not %s", name, pod.metadata.uid, uid)
            return None
        return owner

    def _run(self, cfg: SlamConfig, step: str, key: str, argv: list[str], outputs: dict[str, str]) -> LaunchResult:
        _check_pod_inputs(cfg, key)
        shape = self.shape or ClusterShape(num_workers=cfg.train.num_workers,
                                           gpus_per_worker=1 if cfg.train.use_gpu else 0)
        spec_uri = storage.join(cfg.storage.root, step, key, "step.json")
        name = rayjob_name(key, step)
        kube = self._kube()
        owner = self._pod_owner(kube)
        body = build_rayjob(name, spec_uri, shape=shape, settings=settings_from_env(self.settings),
                            namespace=self.namespace, run_id=key, step=step, outputs=outputs, owner=owner)
        write_spec(spec_uri, argv)
        runner_kw = {k: v for k, v in self.runner_kw.items() if k != "retry"}
        result = RayJobRunner(kube, self.namespace, **runner_kw).run(body)
        log.info("RayJob %s %s in %.0f s (%s)", result.name, result.job_status, result.elapsed_s,
                 "re-attached" if result.reattached else "created")
        return result

    def _config_uri(self, cfg: SlamConfig, step: str, key: str) -> str:
        uri = storage.join(cfg.storage.root, step, key, "config.yaml")
        storage.write_text(uri, dump_config(cfg))  # never a tracking URI's user:password@
        return uri

    def train(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        from slam.train import delta_uri, resolve_layers, run_name_for

        _check_pod_inputs(cfg, key)
        cfg = resolve_layers(cfg)  # the pods get the decided layers, not the probe to re-read
        delta = delta_uri(cfg.storage.root, cfg)
        self._run(cfg, step, key, ["train", "--config", self._config_uri(cfg, step, key),
                                   "--storage", cfg.storage.root], {"delta": delta})
        return {"delta_uri": delta, "metrics": {}, "run_name": run_name_for(cfg)}

    def tune(self, cfg: SlamConfig, *, step: str, key: str) -> dict[str, Any]:
        from slam.launch import tune_out_uri

        _check_pod_inputs(cfg, key)
        out_uri = tune_out_uri(cfg, step, key)
        self._run(cfg, step, key, ["tune", "--config", self._config_uri(cfg, step, key),
                                   "--storage", cfg.storage.root, "--out", out_uri,
                                   "--num-workers", str(cfg.train.num_workers)],
                  {"best": storage.join(out_uri, "best.json")})
        best = storage.read_json(storage.join(out_uri, "best.json"))
        rows = storage.read_json(storage.join(out_uri, "results.json"))
        return {"best": best, "rows": rows if isinstance(rows, list) else rows.get("rows", []), "out_uri": out_uri}
