"""KubeRay RayJob (ray.io/v1) objects for one `slam` step: names, cluster shape, pod templates, the spec.

    body = build_rayjob(rayjob_name(run_id, "train"), "s3://b/run/train/3f9c/step.json",
                        shape=ClusterShape(num_workers=2, gpus_per_worker=1), settings=RayJobSettings(image=IMG),
                        outputs={"delta": "s3://b/run/delta"}, owner=PodOwner("kfp-pod-x", "<uid>"))
    slam launch rayjob --print --storage s3://b/run -- slam train --config s3://b/run/config.yaml   # as YAML

Pure functions over dicts (no Kubernetes client, no Ray): `slam.launch.kuberay` creates and waits.
The name and `spec.jobId` derive from the run id + step, so a KFP retry finds the same RayJob.
The entrypoint is a constant (`slam.launch.entry.ENTRYPOINT`); what it runs is the step spec at
`spec_uri`, given to the pods as the env var SLAM_STEP_SPEC. No field of the RayJob that KubeRay
pastes into its submitter's shell (entrypoint, runtimeEnvYAML, metadata) carries a user value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from slam.errors import SlamError
from slam.launch import validate
from slam.launch.entry import ENTRYPOINT, SPEC_ENV

# KubeRay: RayCluster names <= 53 (a 5-char suffix + "-" is added for RayJob clusters) so RayJob names
# <= 47; both must be DNS-1035 labels (MaxRayJobNameLength / ValidateRayJobMetadata).
MAX_RAYJOB_NAME = 47
GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
ANN_SPEC_HASH = "slam.io/spec-hash"
ANN_OUTPUTS = "slam.io/outputs"
ANN_RUN_ID = "slam.io/run-id"
CACHE_DIR = "/cache"  # the image's HF_HOME / TORCH_EXTENSIONS_DIR live under it (Dockerfile)
DEFAULT_IMAGE = "ghcr.io/slam-project/slam:0.1.0"
IMAGE_ENV = "SLAM_IMAGE"  # the one image setting: compile time for the KFP steps, run time for RayJobs


def default_image() -> str:
    """$SLAM_IMAGE (the pipeline sets it on the launcher steps to the image they run in), else the release."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


@dataclass(frozen=True)
class PodOwner:
    """The pod that creates the RayJob (a KFP step pod): its ownerReference makes the garbage collector
    delete the RayJob when that pod is deleted (a cancelled or cleaned-up KFP run)."""

    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        # No blockOwnerDeletion: setting it needs update on pods/finalizers, which the launcher's Role lacks.
        return {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}


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

    image: str = field(default_factory=default_image)
    image_pull_policy: str = "IfNotPresent"
    service_account: str = "slam-ray"
    s3_secret: str = "slam-s3"
    """Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; "" = none (IRSA / workload identity)."""
    mlflow_secret: str = "slam-mlflow"
    """Secret with MLFLOW_TRACKING_USERNAME / _PASSWORD (optional keys: an open MLflow needs none)."""
    endpoints_configmap: str = "slam-endpoints"
    """ConfigMap whose keys become env (AWS_ENDPOINT_URL, MLFLOW_TRACKING_URI, …)."""
    ray_version: str = "2.60.0"
    ttl_seconds_after_finished: int = 120
    """The finished cluster stays this long (dashboard, logs), then KubeRay deletes it."""
    active_deadline_seconds: int = 24 * 3600
    """KubeRay marks the RayJob Failed after this long but never stops the Ray job: the launcher deletes
    the RayJob itself at this deadline (slam.launch.kuberay)."""
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


def _env(settings: RayJobSettings, extra_env: dict[str, str], spec_uri: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    env: list[dict[str, Any]] = []
    if settings.s3_secret:
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": k}}}
                for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
        # the same Secret the KFP steps read may name the endpoint (README); the ConfigMap is the fallback
        env.append({"name": "AWS_ENDPOINT_URL", "valueFrom": {"secretKeyRef": {
            "name": settings.s3_secret, "key": "AWS_ENDPOINT_URL", "optional": True}}})
    if settings.mlflow_secret:
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": settings.mlflow_secret, "key": k, "optional": True}}}
                for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")]
    env += [{"name": k, "value": str(v)} for k, v in sorted(extra_env.items())]
    env.append({"name": SPEC_ENV, "value": spec_uri})  # container env: never read by a shell
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


_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _checked(problems: list[str], check: Any, value: Any, what: str) -> None:
    try:
        check(value, what)
    except SlamError as e:
        problems.append(str(e))


def _problems(name: str, spec_uri: str, shape: ClusterShape, settings: RayJobSettings, outputs: dict[str, str],
              extra_env: dict[str, str], namespace: str | None, owner: PodOwner | None) -> list[str]:
    """Every reason this RayJob must not be created, at once (each value here ends up in a pod)."""
    problems: list[str] = []
    if len(name) > MAX_RAYJOB_NAME or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        problems.append(f"name {name!r} must be a DNS-1035 label of at most {MAX_RAYJOB_NAME} chars (use rayjob_name())")
    _checked(problems, validate.s3_uri, spec_uri, "step spec URI")
    for k, v in outputs.items():
        _checked(problems, validate.s3_uri, v, f"output {k}")
    _checked(problems, validate.image, settings.image, "image")
    _checked(problems, validate.k8s_name, settings.service_account, "service account")
    for what, v in (("S3 secret", settings.s3_secret), ("MLflow secret", settings.mlflow_secret),
                    ("endpoints ConfigMap", settings.endpoints_configmap), ("Kueue queue", settings.queue)):
        if v:
            _checked(problems, validate.subdomain, v, what)
    if namespace:
        _checked(problems, validate.namespace, namespace, "namespace")
    if owner is not None:
        _checked(problems, validate.subdomain, owner.name, "owner pod name")
        _checked(problems, validate.uid, owner.uid, "owner pod uid")
    if shape.num_workers < 1:
        problems.append(f"num_workers must be >= 1, got {shape.num_workers}")
    if shape.gpus_per_worker < 0:
        problems.append(f"gpus_per_worker must be >= 0, got {shape.gpus_per_worker}")
    for what, q in (("cpus_per_worker", shape.cpus_per_worker), ("memory_per_worker", shape.memory_per_worker),
                    ("head_cpus", shape.head_cpus), ("head_memory", shape.head_memory), ("shm_size", shape.shm_size)):
        if not _QUANTITY.fullmatch(str(q)) or float(re.match(r"[0-9.]+", str(q) + "0").group()) <= 0:
            problems.append(f"{what} {q!r} is not a positive Kubernetes quantity like 4, 500m or 16Gi")
    for k, v in shape.node_selector.items():
        if not _LABEL_KEY.fullmatch(k) or not _LABEL_VALUE.fullmatch(v) or not v:
            problems.append(f"node selector {k}={v!r} is not a label key=value")
    for t in shape.tolerations:
        if not _LABEL_KEY.fullmatch(str(t.get("key", ""))):
            problems.append(f"toleration key {t.get('key')!r} is not a label key")
    for k, v in extra_env.items():
        if not _ENV_NAME.fullmatch(k) or k == SPEC_ENV:
            problems.append(f"extra_env name {k!r} must be a C identifier other than {SPEC_ENV}")
        if "$(" in str(v):  # the kubelet would expand $(VAR) references to other env vars (credentials)
            problems.append(f"extra_env {k}: '$(' is not allowed in values")
    secretish = [k for k in extra_env if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", k, re.I)]
    if secretish:
        problems.append(f"extra_env {secretish} look like credentials: inject them from a Secret, never inline")
    return problems


def _cluster_spec(shape: ClusterShape, settings: RayJobSettings, env: list[dict[str, Any]],
                  env_from: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, Any]:
    """rayClusterSpec: a head that runs only the driver (num-cpus 0) and one fixed-size worker group."""
    head_res = {"cpu": shape.head_cpus, "memory": shape.head_memory}
    worker_res: dict[str, Any] = {"cpu": shape.cpus_per_worker, "memory": shape.memory_per_worker}
    worker_limits = dict(worker_res)
    if shape.gpus_per_worker:
        worker_limits[shape.gpu_resource] = shape.gpus_per_worker
    return {
        "rayVersion": settings.ray_version,
        # Ray token auth (KubeRay makes the token Secret and wires head, workers and submitter): the head
        # holds the S3/MLflow credentials, so no pod that merely reaches it may submit code.
        "authOptions": {"mode": "token"},
        "headGroupSpec": {
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
    }


def build_rayjob(
    name: str,
    spec_uri: str,
    *,
    shape: ClusterShape | None = None,
    settings: RayJobSettings | None = None,
    namespace: str | None = None,
    run_id: str = "",
    step: str = "",
    outputs: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    owner: PodOwner | None = None,
) -> dict[str, Any]:
    """The RayJob dict that runs the step spec at `spec_uri` (slam.launch.entry) on a fresh cluster of `shape`."""
    shape, settings = shape or ClusterShape(), settings or RayJobSettings()
    outputs, extra_env = dict(outputs or {}), dict(extra_env or {})
    problems = _problems(name, spec_uri, shape, settings, outputs, extra_env, namespace, owner)
    if problems:
        raise SlamError("cannot build RayJob: " + "; ".join(problems))
    labels = {"app.kubernetes.io/name": "slam", "app.kubernetes.io/managed-by": "slam-launcher"}
    if step:
        labels["app.kubernetes.io/component"] = label_value(step)
    if run_id:
        labels["slam.io/run-id"] = label_value(run_id)
    env, env_from = _env(settings, extra_env, spec_uri)
    spec: dict[str, Any] = {
        "entrypoint": ENTRYPOINT,
        "jobId": name,
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "activeDeadlineSeconds": settings.active_deadline_seconds,
        "preRunningDeadlineSeconds": settings.pre_running_deadline_seconds,
        # Ray Train's FailureConfig retries workers and KFP retries the step; a KubeRay retry would
        # rebuild the whole cluster behind both of their backs.
        "backoffLimit": 0,
        "rayClusterSpec": _cluster_spec(shape, settings, env, env_from, labels),
    }
    if settings.queue:
        spec["suspend"] = True  # Kueue flips it once the quota admits the whole cluster
        labels = {**labels, "kueue.x-k8s.io/queue-name": settings.queue}
    annotations = {ANN_SPEC_HASH: spec_hash(spec), ANN_OUTPUTS: json.dumps(outputs, sort_keys=True)}
    if run_id:
        annotations[ANN_RUN_ID] = run_id
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if namespace:
        metadata["namespace"] = namespace
    if owner is not None:
        metadata["ownerReferences"] = [owner.reference()]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RayJob", "metadata": metadata, "spec": spec}
