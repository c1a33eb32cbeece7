"""Run a `slam train|tune …` step on Kubernetes as a KubeRay RayJob (ray.io/v1) and wait for it.

    from kubernetes import client, config
    config.load_incluster_config()
    body = build_rayjob(rayjob_name(run_id, "train"), ["slam", "train", "--config", "s3://b/run/config.yaml"],
                        shape=ClusterShape(num_workers=2, gpus_per_worker=1), settings=RayJobSettings(image=IMG),
                        outputs={"delta": "s3://b/run/delta"})
    result = KubeRayLauncher(client.CustomObjectsApi(), "slam", core_api=client.CoreV1Api()).run(body)
    result.outputs   # S3 URIs written by the job: weights never travel through KFP

`slam launch rayjob --print …` renders the same object. Only the kubernetes client is used (no ray
import): the operator creates the cluster, submits the entrypoint and tears it all down.

Idempotency: the name and `spec.jobId` come from the KFP run id + step, and the launcher gets before
it creates, so a KFP retry re-attaches to the job already running (or finished) instead of starting a
second one. A RayJob of that name with a *different* spec is refused. A *failed* one is deleted and
re-created on retry (Ray Train resumes from its checkpoints because the run name is unchanged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slam.errors import SlamError
from slam.k8s_schema import MAX_RAYJOB_NAME

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
ANN_SPEC_HASH = "slam.io/spec-hash"
ANN_OUTPUTS = "slam.io/outputs"
ANN_RUN_ID = "slam.io/run-id"
CACHE_DIR = "/cache"  # the image's HF_HOME / TORCH_EXTENSIONS_DIR live under it (Dockerfile)
MAX_ENTRYPOINT = 8192  # bigger means a config was inlined: pass an s3:// URI instead

# KubeRay JobDeploymentStatus values (rayjob_types.go). Terminal: Complete, Failed (+ ValidationFailed).
DEPLOYMENT_FAILED = {"Failed", "ValidationFailed"}
JOB_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class RayJobFailed(SlamError):
    """The RayJob ended without success; the message carries KubeRay's reason/message and the last log line."""


class RayJobTimeout(SlamError):
    """The RayJob did not start or finish in time; it keeps running (activeDeadlineSeconds bounds it)."""


@dataclass(frozen=True)
class ClusterShape:
    """The Ray cluster one RayJob gets: a head that runs only the driver, and one worker group."""

    num_workers: int = 1
    gpus_per_worker: int = 0
    cpus_per_worker: str = "4"
    memory_per_worker: str = "16Gi"
    head_cpus: str = "2"
    head_memory: str = "8Gi"
    shm_size: str = "8Gi"
    """/dev/shm (memory-backed emptyDir): NCCL and torch dataloaders need more than Docker's 64 MiB."""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    gpu_resource: str = "nvidia.com/gpu"


@dataclass(frozen=True)
class RayJobSettings:
    """Cluster-side names the RayJob refers to (they match k8s/base) and its lifecycle bounds."""

    image: str = "ghcr.io/slam-project/slam:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    service_account: str = "slam-ray"
    s3_secret: str = "slam-s3"
    """Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; "" = none (IRSA / workload identity)."""
    mlflow_secret: str = "slam-mlflow"
    """Secret with MLFLOW_TRACKING_USERNAME / _PASSWORD (optional keys: an open MLflow needs none)."""
    endpoints_configmap: str = "slam-endpoints"
    """ConfigMap whose keys become env (AWS_ENDPOINT_URL, MLFLOW_TRACKING_URI, …)."""
    ray_version: str = "2.60.0"
    ttl_seconds_after_finished: int = 3600
    active_deadline_seconds: int = 24 * 3600
    pre_running_deadline_seconds: int = 3600
    """Fail (instead of hanging) when the cluster cannot be scheduled, e.g. no GPU node fits."""
    queue: str = ""
    """Kueue LocalQueue: the RayJob is created suspended and Kueue admits it."""


# --------------------------------------------------------------------------------------------------
# Building


def rayjob_name(run_id: str, step: str) -> str:
    """Deterministic DNS-1035 name (<= 47 chars, KubeRay's RayJob limit) for one step of one KFP run."""
    if not run_id or not step:
        raise SlamError("rayjob name: run id and step must both be non-empty")
    readable = re.sub(r"[^a-z0-9]+", "-", f"slam-{step}-{run_id}".lower()).strip("-")
    digest = hashlib.sha256(f"{run_id}\0{step}".encode()).hexdigest()[:8]
    return f"{readable[: MAX_RAYJOB_NAME - 9].rstrip('-')}-{digest}"


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric ends) carrying as much of `text` as fits."""
    v = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", v)


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _env(settings: RayJobSettings, extra_env: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    env: list[dict[str, Any]] = []
    if settings.s3_secret:
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": k}}}
                for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    if settings.mlflow_secret:
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": settings.mlflow_secret, "key": k, "optional": True}}}
                for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")]
    env += [{"name": k, "value": str(v)} for k, v in sorted(extra_env.items())]
    env_from = ([{"configMapRef": {"name": settings.endpoints_configmap, "optional": True}}]
                if settings.endpoints_configmap else [])
    return env, env_from


def _pod_template(role: str, settings: RayJobSettings, shape: ClusterShape, resources: dict[str, Any],
                  env: list[dict[str, Any]], env_from: list[dict[str, Any]], labels: dict[str, str],
                  ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": f"ray-{role}",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "env": env,
        "resources": resources,
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "cache", "mountPath": CACHE_DIR}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if env_from:
        container["envFrom"] = env_from
    if ports:
        container["ports"] = ports
    spec: dict[str, Any] = {
        "serviceAccountName": settings.service_account,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shape.shm_size}},
                    {"name": "cache", "emptyDir": {}}],
    }
    # The head runs only the driver: GPU node placement/tolerations matter for workers.
    if role == "worker" and shape.node_selector:
        spec["nodeSelector"] = dict(shape.node_selector)
    if role == "worker" and shape.tolerations:
        spec["tolerations"] = [dict(t) for t in shape.tolerations]
    return {"metadata": {"labels": dict(labels)}, "spec": spec}


def build_rayjob(
    name: str,
    command: Sequence[str],
    *,
    shape: ClusterShape | None = None,
    settings: RayJobSettings | None = None,
    namespace: str | None = None,
    run_id: str = "",
    step: str = "",
    outputs: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The RayJob dict for `command` (a `slam …` argv) on a fresh cluster of `shape`."""
    shape, settings = shape or ClusterShape(), settings or RayJobSettings()
    problems = []
    if len(name) > MAX_RAYJOB_NAME or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        problems.append(f"name {name!r} must be a DNS-1035 label of at most {MAX_RAYJOB_NAME} chars (use rayjob_name())")
    if not command or command[0] != "slam":
        problems.append(f"command must be a `slam <step> …` argv, got {list(command)[:3]!r}")
    entrypoint = shlex.join(command)
    if len(entrypoint) > MAX_ENTRYPOINT:
        problems.append(f"entrypoint is {len(entrypoint)} chars: pass the config as an s3:// URI, not inline")
    if shape.num_workers < 1:
        problems.append(f"num_workers must be >= 1, got {shape.num_workers}")
    if shape.gpus_per_worker < 0:
        problems.append(f"gpus_per_worker must be >= 0, got {shape.gpus_per_worker}")
    secretish = [k for k in (extra_env or {}) if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", k, re.I)]
    if secretish:
        problems.append(f"extra_env {secretish} look like credentials: inject them from a Secret, never inline")
    bad_out = [f"{k}={v}" for k, v in (outputs or {}).items() if not str(v).startswith("s3://")]
    if bad_out:
        problems.append(f"outputs must be s3:// URIs (pods share no disk with the caller): {bad_out}")
    if problems:
        raise SlamError("cannot build RayJob: " + "; ".join(problems))

    labels = {"app.kubernetes.io/name": "slam", "app.kubernetes.io/managed-by": "slam-launcher"}
    if step:
        labels["app.kubernetes.io/component"] = label_value(step)
    if run_id:
        labels["slam.io/run-id"] = label_value(run_id)
    env, env_from = _env(settings, extra_env or {})
    head_res = {"cpu": shape.head_cpus, "memory": shape.head_memory}
    worker_res: dict[str, Any] = {"cpu": shape.cpus_per_worker, "memory": shape.memory_per_worker}
    worker_limits = dict(worker_res)
    if shape.gpus_per_worker:
        worker_limits[shape.gpu_resource] = shape.gpus_per_worker
    spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "jobId": name,
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "activeDeadlineSeconds": settings.active_deadline_seconds,
        "preRunningDeadlineSeconds": settings.pre_running_deadline_seconds,
        # Ray Train's FailureConfig retries workers and KFP retries the step; a KubeRay retry would
        # rebuild the whole cluster behind both of their backs.
        "backoffLimit": 0,
        "rayClusterSpec": {
            "rayVersion": settings.ray_version,
            "headGroupSpec": {
                # num-cpus 0: the driver (entrypoint) lives here, training work goes to the workers.
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                "template": _pod_template("head", settings, shape, {"requests": head_res, "limits": head_res},
                                          env, env_from, labels,
                                          ports=[{"containerPort": 6379, "name": "gcs"},
                                                 {"containerPort": 8265, "name": "dashboard"},
                                                 {"containerPort": 10001, "name": "client"}]),
            },
            "workerGroupSpecs": [{
                "groupName": "gpu-workers" if shape.gpus_per_worker else "cpu-workers",
                "replicas": shape.num_workers,
                "minReplicas": shape.num_workers,
                "maxReplicas": shape.num_workers,
                "rayStartParams": {},
                "template": _pod_template("worker", settings, shape, {"requests": worker_res, "limits": worker_limits},
                                          env, env_from, labels),
            }],
        },
    }
    if settings.queue:
        spec["suspend"] = True  # Kueue flips it once the quota admits the whole cluster
        labels = {**labels, "kueue.x-k8s.io/queue-name": settings.queue}
    annotations = {ANN_SPEC_HASH: spec_hash(spec), ANN_OUTPUTS: json.dumps(outputs or {}, sort_keys=True)}
    if run_id:
        annotations[ANN_RUN_ID] = run_id
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RayJob", "metadata": metadata, "spec": spec}


# --------------------------------------------------------------------------------------------------
# Launching


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


class KubeRayLauncher:
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
            from slam import storage

            missing = [f"{k}={u}" for k, u in outputs.items()
                       if not (storage.exists(u) or storage.exists(storage.join(u, storage.SUCCESS)))]
            if missing:
                raise RayJobFailed(f"RayJob {name} succeeded but its outputs are missing: {', '.join(missing)}")
        st = obj.get("status") or {}
        return LaunchResult(name=name, job_id=obj["spec"].get("jobId", name), job_status=st.get("jobStatus", ""),
                            deployment_status=st.get("jobDeploymentStatus", ""), outputs=outputs,
                            reattached=reattached, elapsed_s=self.clock() - t0,
                            dashboard_url=st.get("dashboardURL", ""), log_tail=list(self._seen))
