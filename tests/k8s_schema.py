"""Our own minimal schema for the KubeRay `RayJob` / `RayCluster` (ray.io/v1) fields we use.

    from k8s_schema import validate_ray_object
    problems = validate_ray_object(rayjob_dict)      # [] when valid; pod templates are NOT checked here

Derived by reading KubeRay v1.7 `ray-operator/config/crd/bases/ray.io_{rayjobs,rayclusters}.yaml`
and the operator's own checks (`controllers/ray/utils/validation.go`); written here, not vendored.
The levels we generate are `extra="forbid"` so a typo (`shutdownAfterJobFinish`) fails offline
instead of being pruned silently by the API server. Fields we never set are accepted only where the
CRD has them. Pod templates stay plain dicts: tests check them with kubernetes-validate by wrapping
them as v1 PodTemplates (`pod_templates()` lists them).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# KubeRay: RayCluster names <= 53 (a 5-char suffix + "-" is added for RayJob clusters) so RayJob names
# <= 47; both must be DNS-1035 labels (MaxRayJobNameLength / ValidateRayJobMetadata).
MAX_RAYJOB_NAME = 47
MAX_RAYCLUSTER_NAME = 53
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
INT32_MAX = 2**31 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ObjectMeta(BaseModel):
    # Metadata is validated by the API server itself; we only pin what our names must satisfy.
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class AutoscalerOptions(_Strict):
    version: Literal["v1", "v2"] | None = None
    upscalingMode: Literal["Default", "Aggressive", "Conservative"] | None = None
    idleTimeoutSeconds: int | None = Field(default=None, ge=0, le=INT32_MAX)
    image: str | None = None
    imagePullPolicy: str | None = None
    resources: dict[str, Any] | None = None
    env: list[dict[str, Any]] | None = None
    envFrom: list[dict[str, Any]] | None = None
    securityContext: dict[str, Any] | None = None
    volumeMounts: list[dict[str, Any]] | None = None


class HeadGroupSpec(_Strict):
    template: dict[str, Any]
    rayStartParams: dict[str, str] = Field(default_factory=dict)
    serviceType: str | None = None
    enableIngress: bool | None = None
    headService: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    resources: dict[str, str] | None = None


class WorkerGroupSpec(_Strict):
    groupName: str
    minReplicas: int = Field(ge=0, le=INT32_MAX)
    maxReplicas: int = Field(ge=0, le=INT32_MAX)
    template: dict[str, Any]
    replicas: int | None = Field(default=None, ge=0, le=INT32_MAX)
    numOfHosts: int | None = Field(default=None, ge=1, le=INT32_MAX)
    rayStartParams: dict[str, str] = Field(default_factory=dict)
    idleTimeoutSeconds: int | None = Field(default=None, ge=0, le=INT32_MAX)
    labels: dict[str, str] | None = None
    resources: dict[str, str] | None = None
    suspend: bool | None = None
    scaleStrategy: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> WorkerGroupSpec:
        if self.minReplicas > self.maxReplicas:
            raise ValueError(f"worker group {self.groupName}: minReplicas {self.minReplicas} > maxReplicas {self.maxReplicas}")
        if self.replicas is not None and not self.minReplicas <= self.replicas <= self.maxReplicas:
            raise ValueError(f"worker group {self.groupName}: replicas {self.replicas} outside [min, max]")
        return self


class AuthOptions(_Strict):
    mode: Literal["disabled", "token"] | None = None
    enableK8sTokenAuth: bool | None = None
    secretName: str | None = None


class RayClusterSpec(_Strict):
    authOptions: AuthOptions | None = None
    headGroupSpec: HeadGroupSpec
    workerGroupSpecs: list[WorkerGroupSpec] = Field(default_factory=list)
    rayVersion: str | None = None
    enableInTreeAutoscaling: bool | None = None
    autoscalerOptions: AutoscalerOptions | None = None
    headServiceAnnotations: dict[str, str] | None = None
    suspend: bool | None = None

    @model_validator(mode="after")
    def _containers(self) -> RayClusterSpec:
        for where, tpl in [("headGroupSpec", self.headGroupSpec.template),
                           *[(f"workerGroupSpecs[{g.groupName}]", g.template) for g in self.workerGroupSpecs]]:
            if not (tpl.get("spec") or {}).get("containers"):
                raise ValueError(f"{where}.template must have at least one container")
        names = [g.groupName for g in self.workerGroupSpecs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate worker groupName in {names}")
        return self


class RayJobSpec(_Strict):
    entrypoint: str = Field(min_length=1)
    rayClusterSpec: RayClusterSpec | None = None
    clusterSelector: dict[str, str] | None = None
    jobId: str | None = None
    submissionMode: Literal["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"] | None = None
    shutdownAfterJobFinishes: bool | None = None
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0, le=INT32_MAX)
    activeDeadlineSeconds: int | None = Field(default=None, ge=1, le=INT32_MAX)
    preRunningDeadlineSeconds: int | None = Field(default=None, ge=1, le=INT32_MAX)
    backoffLimit: int | None = Field(default=None, ge=0, le=INT32_MAX)
    runtimeEnvYAML: str | None = None
    entrypointNumCpus: float | None = None
    entrypointNumGpus: float | None = None
    entrypointResources: str | None = None
    submitterPodTemplate: dict[str, Any] | None = None
    suspend: bool | None = None
    metadata: dict[str, str] | None = None

    @model_validator(mode="after")
    def _kuberay_rules(self) -> RayJobSpec:
        # The operator's ValidateRayJobSpec, restated: these fail at admission/reconcile time otherwise.
        if self.rayClusterSpec is None and not self.clusterSelector:
            raise ValueError("one of rayClusterSpec or clusterSelector must be set")
        if self.suspend and not self.shutdownAfterJobFinishes:
            raise ValueError("suspend requires shutdownAfterJobFinishes: true")
        if self.clusterSelector and (self.backoffLimit or 0) > 0:
            raise ValueError("backoffLimit > 0 is incompatible with clusterSelector")
        if (self.ttlSecondsAfterFinished or 0) > 0 and not self.shutdownAfterJobFinishes:
            raise ValueError("ttlSecondsAfterFinished > 0 requires shutdownAfterJobFinishes: true")
        return self


class RayJob(_Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayJob"]
    metadata: ObjectMeta
    spec: RayJobSpec

    @model_validator(mode="after")
    def _name(self) -> RayJob:
        _check_name(self.metadata.name, MAX_RAYJOB_NAME)
        return self


class RayCluster(_Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayCluster"]
    metadata: ObjectMeta
    spec: RayClusterSpec

    @model_validator(mode="after")
    def _name(self) -> RayCluster:
        _check_name(self.metadata.name, MAX_RAYCLUSTER_NAME)
        return self


def _check_name(name: str, limit: int) -> None:
    if len(name) > limit:
        raise ValueError(f"name {name!r} is {len(name)} chars; KubeRay allows at most {limit}")
    if not DNS1035.match(name):
        raise ValueError(f"name {name!r} is not a DNS-1035 label (lowercase letters, digits, '-', starting with a letter)")


MODELS: dict[str, type[BaseModel]] = {"RayJob": RayJob, "RayCluster": RayCluster}


def validate_ray_object(obj: dict[str, Any]) -> list[str]:
    """Problems with a RayJob/RayCluster dict's CRD-level fields, one string each ([] = valid)."""
    model = MODELS.get(obj.get("kind", ""))
    if model is None:
        return [f"kind {obj.get('kind')!r} is not one of {sorted(MODELS)}"]
    try:
        model.model_validate(obj)
    except ValidationError as e:
        return [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()]
    return []


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, template) for every pod template in a RayJob/RayCluster: head, each worker group, submitter."""
    spec = obj.get("spec") or {}
    out: list[tuple[str, dict[str, Any]]] = []
    if obj.get("kind") == "RayJob":
        if spec.get("submitterPodTemplate"):
            out.append(("spec.submitterPodTemplate", spec["submitterPodTemplate"]))
        spec, prefix = spec.get("rayClusterSpec") or {}, "spec.rayClusterSpec"
    else:
        prefix = "spec"
    if "headGroupSpec" in spec:
        out.append((f"{prefix}.headGroupSpec.template", spec["headGroupSpec"]["template"]))
    for i, g in enumerate(spec.get("workerGroupSpecs") or []):
        out.append((f"{prefix}.workerGroupSpecs[{i}].template", g["template"]))
    return out


def as_pod_template(name: str, template: dict[str, Any]) -> dict[str, Any]:
    """Wrap a pod template as a v1 PodTemplate so kubernetes-validate can check it (it knows no CRDs)."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}
