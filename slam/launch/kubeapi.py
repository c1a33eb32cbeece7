"""The launcher's access to the Kubernetes API: credentials, per-request timeouts, bounded retries.

    kube = KubeApi.from_environment()                 # in-cluster service account, else $KUBECONFIG
    obj = kube.call("get RayJob x", kube.custom.get_namespaced_custom_object, "ray.io", "v1", "slam", "rayjobs", "x")

Every request carries `_request_timeout=(connect, read)` - an int pair, because kubernetes==30.1.0
silently ignores a float - and urllib3's own silent retries are switched off (`retries=0`), so the
one retry policy (slam.retry) decides: 5xx/429/connection errors/timeouts are retried with backoff,
then one SlamError; 401/403 become one line that names the service account and the Role to check.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from slam.errors import SlamError
from slam.retry import Retry, retrying

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def status_code(e: BaseException) -> int | None:
    return getattr(e, "status", None)


def is_transient(e: BaseException) -> bool:
    """A failure worth retrying: the server was unavailable or slow, not a refusal."""
    import urllib3.exceptions as u3
    from kubernetes.client.exceptions import ApiException

    if isinstance(e, ApiException):
        return e.status in TRANSIENT_STATUS
    return isinstance(e, (u3.HTTPError, ConnectionError, TimeoutError))


class KubeApi:
    """CustomObjectsApi + CoreV1Api behind one retry policy and one request timeout."""

    def __init__(self, custom: Any, core: Any = None, *, timeout: tuple[int, int] = (10, 30),
                 policy: Retry | None = None, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None):
        self.custom, self.core = custom, core
        self.timeout = (int(timeout[0]), int(timeout[1]))
        self.policy = policy or Retry()
        self.sleep, self.clock = sleep, clock

    @classmethod
    def from_environment(cls, **kw: Any) -> KubeApi:
        """In a pod: its service account (in-cluster config); elsewhere: $KUBECONFIG / ~/.kube/config."""
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            try:
                config.load_kube_config(client_configuration=cfg)
            except Exception as e:  # noqa: BLE001 - kubernetes raises several types for "no kubeconfig"
                raise SlamError("no Kubernetes credentials: not in a pod with a service account, and no usable "
                                f"kubeconfig ({str(e).splitlines()[0][:200]})") from None
        cfg.retries = 0  # slam.retry is the one retry loop (urllib3 would retry timed-out GETs 3 more times)
        api = client.ApiClient(cfg)
        return cls(client.CustomObjectsApi(api), client.CoreV1Api(api), **kw)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        extra: dict[str, Any] = {}
        if self.sleep is not None:
            extra["sleep"] = self.sleep
        if self.clock is not None:
            extra["clock"] = self.clock
        try:
            return retrying(lambda: fn(*args, **kwargs), what=f"Kubernetes API: {what}", transient=is_transient,
                            policy=self.policy, **extra)
        except Exception as e:
            if status_code(e) in (401, 403):
                raise SlamError(self._denied(what, e)) from None
            raise

    def _denied(self, what: str, e: BaseException) -> str:
        import json

        try:
            msg = json.loads(getattr(e, "body", "") or "{}").get("message", "")
        except ValueError:
            msg = ""
        who = os.environ.get("SLAM_SERVICE_ACCOUNT", "")
        hint = (f" (this pod runs as service account {who!r})" if who else "")
        return (f"Kubernetes API refused to {what}: {status_code(e)} {msg or getattr(e, 'reason', '')}{hint}; "
                "the launcher needs the Role in k8s/base/rbac.yaml bound to its service account "
                "(pipelines: `slam pipeline submit --service-account slam-pipeline`, the default)")
