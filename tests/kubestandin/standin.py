"""KubeStandin: the API server stand-in set up for this project (KubeRay RayJob CRD, k8s/base RBAC)
plus, when a local Ray cluster is given, the KubeRay operator stand-in.

    kube = KubeStandin(namespace="slam", ray=local_ray).start()
    api = kube.custom_objects("slam-pipeline")       # kubernetes.client.CustomObjectsApi as that SA
    core = kube.core_v1("slam-pipeline")
    kube.add_pod("kfp-step-pod")                      # the pod a launcher runs in (ownerReference target)
    kube.faults.fail_next(3)                          # the next 3 requests answer 500
    kube.wait_rayjob("x", lambda o: o["status"].get("jobDeploymentStatus") == "Complete")
    kube.stop()
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .apiserver import KubeApiServer, ResourceType
from .operator import JOBS, PODS, RAYCLUSTERS, RAYJOBS, KubeRayOperator, OperatorConfig
from .rbac import Rbac
from .schema import crd_schema, load_crd

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "tests" / "data" / "kuberay"
RBAC_FILES = [REPO / "k8s" / "base" / "rbac.yaml"]


@functools.lru_cache(maxsize=1)
def rayjob_schema():
    """KubeRay's RayJob v1 openAPIV3Schema (tests/data/kuberay), parsed once per process."""
    return crd_schema(load_crd(CRD_DIR / "ray.io_rayjobs.yaml"), "v1")


class KubeStandin:
    def __init__(self, *, namespace: str = "slam", rbac_files: list[Path] | None = None, ray: Any = None,
                 operator_config: OperatorConfig | None = None, default_field_validation: str = "Strict"):
        self.namespace = namespace
        self.rbac = Rbac.from_files(rbac_files or RBAC_FILES, namespace)
        self.api = KubeApiServer(rbac=self.rbac, namespace=namespace, default_field_validation=default_field_validation)
        st = self.api.store
        self.schema = rayjob_schema()
        st.register(ResourceType("ray.io", "v1", "rayjobs", "RayJob", schema=self.schema, writable=True,
                                 subresources=("status",)))
        st.register(ResourceType("ray.io", "v1", "rayclusters", "RayCluster", subresources=("status",)))
        st.register(ResourceType("batch", "v1", "jobs", "Job", subresources=("status",)))
        st.register(ResourceType("", "v1", "pods", "Pod", subresources=("log", "status")))
        st.register(ResourceType("", "v1", "secrets", "Secret"))
        st.register(ResourceType("", "v1", "configmaps", "ConfigMap"))
        self.ray = ray
        self.operator = KubeRayOperator(self.api, ray, operator_config) if ray is not None else None

    # -- lifecycle
    def start(self) -> KubeStandin:
        self.api.start()
        if self.operator is not None:
            self.operator.start()
        return self

    def stop(self) -> None:
        try:
            if self.operator is not None:
                self.operator.stop(cleanup=True)
        finally:
            self.api.stop()

    def __enter__(self) -> KubeStandin:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- clients
    @property
    def url(self) -> str:
        return self.api.url

    @property
    def faults(self):
        return self.api.faults

    def token_for(self, service_account: str = "slam-pipeline", namespace: str | None = None) -> str:
        return self.api.token_for(service_account, namespace)

    def configuration(self, service_account: str | None = "slam-pipeline", namespace: str | None = None):
        """A kubernetes.client.Configuration for this server, authenticated as that service account
        (None: no credentials at all)."""
        from kubernetes import client

        cfg = client.Configuration(host=self.url)
        if service_account is not None:
            cfg.api_key = {"authorization": self.token_for(service_account, namespace)}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        return cfg

    def api_client(self, service_account: str | None = "slam-pipeline", namespace: str | None = None):
        from kubernetes import client

        return client.ApiClient(self.configuration(service_account, namespace))

    def custom_objects(self, service_account: str | None = "slam-pipeline", namespace: str | None = None):
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client(service_account, namespace))

    def core_v1(self, service_account: str | None = "slam-pipeline", namespace: str | None = None):
        from kubernetes import client

        return client.CoreV1Api(self.api_client(service_account, namespace))

    def kubeconfig(self, path: Path, service_account: str = "slam-pipeline", namespace: str | None = None) -> Path:
        """Write a kubeconfig (KUBECONFIG=path) for a subprocess: `kubernetes.config.load_kube_config()`."""
        import yaml

        ns = namespace or self.namespace
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "standin",
               "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
               "users": [{"name": service_account, "user": {"token": self.token_for(service_account, ns)}}],
               "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": service_account,
                                                           "namespace": ns}}]}
        path = Path(path)
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    # -- store access for tests (no HTTP, no RBAC)
    def add_pod(self, name: str, **kw: Any) -> dict[str, Any]:
        return self.api.add_pod(name, **kw)

    def delete_pod(self, name: str, namespace: str | None = None) -> None:
        self.api.delete_pod(name, namespace)

    def add_secret(self, name: str, data: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
        return self.api.add_secret(name, data, namespace)

    def add_configmap(self, name: str, data: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
        return self.api.add_configmap(name, data, namespace)

    def rayjob(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.api.store.get(RAYJOBS, namespace or self.namespace, name)

    def rayjobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.api.store.list(RAYJOBS, namespace or self.namespace)

    def rayclusters(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.api.store.list(RAYCLUSTERS, namespace or self.namespace)

    def jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.api.store.list(JOBS, namespace or self.namespace)

    def pods(self, selector: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.api.store.list(PODS, namespace or self.namespace, selector)

    def history(self, name: str, namespace: str | None = None) -> list[Any]:
        """The Ray job submissions the operator made for RayJob `name` (operator.Attempt)."""
        return list((self.operator.history if self.operator else {}).get(f"{namespace or self.namespace}/{name}", []))

    def wait_rayjob(self, name: str, pred: Callable[[dict[str, Any] | None], bool], timeout: float = 60.0,
                    namespace: str | None = None) -> dict[str, Any] | None:
        """Poll the store until pred(rayjob or None) holds; AssertionError with the last state otherwise."""
        deadline = time.monotonic() + timeout
        obj = None
        while time.monotonic() < deadline:
            obj = self.rayjob(name, namespace)
            if pred(obj):
                return obj
            time.sleep(0.05)
        errs = self.operator.errors if self.operator else []
        raise AssertionError(f"RayJob {name}: condition not met in {timeout}s; last: "
                             f"{(obj or {}).get('status')} operator errors: {errs[-1:] if errs else []}")

    @staticmethod
    def status_of(obj: dict[str, Any] | None) -> tuple[str, str]:
        st = (obj or {}).get("status") or {}
        return st.get("jobDeploymentStatus", ""), st.get("jobStatus", "")
