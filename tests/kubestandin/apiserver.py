"""A Kubernetes API server stand-in on 127.0.0.1 that the real `kubernetes` Python client talks to.

    api = KubeApiServer(rbac=Rbac.from_files([...], "slam"), namespace="slam").start()
    token = api.token_for("slam-pipeline")                  # bearer token of system:serviceaccount:slam:slam-pipeline
    cfg = kubernetes.client.Configuration(host=api.url, api_key={"authorization": token},
                                          api_key_prefix={"authorization": "Bearer"})
    kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg)).create_namespaced_custom_object(...)
    api.stop()

What it serves (the same URLs, verbs, status codes and `Status` bodies as kube-apiserver):
- `ray.io/v1 rayjobs`: create, get, list, watch, update (PUT), patch (merge / JSON patch; strategic merge
  is refused with 415 as for every custom resource), delete, deletecollection, and the `status`
  subresource (get/put/patch). Every write is admitted through KubeRay's published CRD schema
  (`schema.py`): pruning + defaulting + validation, `fieldValidation=Strict|Warn|Ignore` (the stand-in's
  default is `Strict`, see `default_field_validation`; a real server defaults to `Warn`, which drops
  unknown fields with a `Warning` header instead of failing), ObjectMeta validation, status ignored on
  create/update of the main resource, `generation` bumped on spec changes.
- core `v1 pods` (get/list/watch/delete and `pods/{name}/log` with tailLines, limitBytes, follow), and
  read-only `secrets`, `configmaps`, `batch/v1 jobs`, `ray.io/v1 rayclusters` (objects the tests or the
  operator stand-in put in the store).
- metadata: uid, resourceVersion (one cluster-wide counter, as etcd's revision), generation,
  creationTimestamp, deletionTimestamp, finalizers, ownerReferences; watch events ADDED/MODIFIED/DELETED
  with resourceVersion resume and `410 Expired` once the event window has moved past it.
- deletion: propagationPolicy Background (default) / Foreground / Orphan, preconditions, dryRun, and a
  garbage collector thread: finalizers hold an object in `Terminating`, dependents of a deleted owner
  (ownerReferences by uid, same namespace) are deleted, an ownerReference to an object that does not
  exist gets its dependent deleted, just as the real GC does.
- authentication by bearer token (401 otherwise) and RBAC from the project's Role/RoleBinding (403).
- fault injection (`faults`): the next N requests or every request for T seconds answer 500 (or any
  code) or hang, optionally only for matching requests.

Not served: server-side apply, protobuf, field selectors other than metadata.name/namespace, tables,
pagination beyond `limit`/`continue`, admission webhooks, quota, pod scheduling.
"""

from __future__ import annotations

import copy
import json
import re
import secrets as _secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .rbac import Rbac, User
from .schema import FieldError, StructuralSchema, validate_object_meta

# --------------------------------------------------------------------------------------------------
# helpers


def now_ts() -> str:
    """metav1.Time as it goes over the wire: RFC 3339, second precision, UTC."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ts_to_epoch(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


_RAND_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def rand_suffix(n: int = 5) -> str:
    return "".join(_secrets.choice(_RAND_ALPHABET) for _ in range(n))


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


# --------------------------------------------------------------------------------------------------
# label selectors

_SEL_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$")


def parse_selector(text: str | None) -> list[tuple[str, str, list[str]]]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` -> [(key, op, values)]; raises ValueError."""
    reqs: list[tuple[str, str, list[str]]] = []
    if not text:
        return reqs
    parts, depth, cur = [], 0, ""
    for ch in text:  # split on commas outside parentheses
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for part in parts:
        m = _SEL_SET.match(part)
        if not m:
            raise ValueError(f"unable to parse requirement: {part!r}")
        neg, key, setop, setvals, op, val = m.groups()
        if neg and (setop or op):
            raise ValueError(f"unable to parse requirement: {part!r}")
        if neg:
            reqs.append((key, "!", []))
        elif setop:
            reqs.append((key, setop, [v.strip() for v in setvals.split(",") if v.strip()]))
        elif op:
            reqs.append((key, "!=" if op == "!=" else "=", [val]))
        else:
            reqs.append((key, "exists", []))
    return reqs


def selector_matches(labels: dict[str, str] | None, reqs: list[tuple[str, str, list[str]]]) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        has, v = key in labels, labels.get(key)
        if (op == "=" and v != vals[0]) or (op == "!=" and has and v == vals[0]) or (op == "in" and v not in vals) \
                or (op == "notin" and has and v in vals) or (op == "exists" and not has) or (op == "!" and has):
            return False
    return True


def field_selector_matches(obj: dict[str, Any], text: str | None) -> bool:
    if not text:
        return True
    meta = obj.get("metadata") or {}
    for part in text.split(","):
        m = re.match(r"^\s*([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m or m.group(1) not in ("metadata.name", "metadata.namespace"):
            raise ValueError(f'"{part}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        have = meta.get(m.group(1).split(".")[1])
        if (m.group(2) == "!=") == (have == m.group(3)):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# resource types and the store


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    schema: StructuralSchema | None = None
    writable: bool = False  # create/update/patch over HTTP (delete is always served)
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)


@dataclass
class Event:
    rv: int
    key: tuple[str, str]
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


class Store:
    """In-memory objects + an event window, all under one lock (cond notifies watchers)."""

    def __init__(self, window: int = 5000):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.types: dict[tuple[str, str], ResourceType] = {}
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self.rv = 100
        self.events: deque[Event] = deque(maxlen=window)
        self.uids: dict[str, tuple[tuple[str, str], str, str]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.log_providers: dict[tuple[str, str], Callable[[], str]] = {}

    def register(self, rt: ResourceType) -> ResourceType:
        self.types[rt.key] = rt
        self.objects.setdefault(rt.key, {})
        return rt

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _emit(self, key: tuple[str, str], type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        self.events.append(Event(int(obj["metadata"]["resourceVersion"]), key, type_, copy.deepcopy(obj),
                                 copy.deepcopy(old) if old is not None else None))
        self.cond.notify_all()

    @property
    def oldest_rv(self) -> int:
        return self.events[0].rv if self.events else self.rv

    # -- reads
    def get(self, key: tuple[str, str], ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            o = self.objects[key].get((ns, name))
            return copy.deepcopy(o) if o is not None else None

    def list(self, key: tuple[str, str], ns: str | None = None, selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        reqs = parse_selector(selector)
        with self.lock:
            out = [copy.deepcopy(o) for (ons, _), o in sorted(self.objects[key].items())
                   if (ns is None or ons == ns) and selector_matches(o["metadata"].get("labels"), reqs)
                   and field_selector_matches(o, field_selector)]
        return out

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        with self.lock:
            where = self.uids.get(uid)
            return self.get(*where) if where else None

    # -- writes (no validation here: HTTP handlers validate, controllers are trusted)
    def create(self, key: tuple[str, str], ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        rt = self.types[key]
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + rand_suffix()
            name = meta["name"]
            if (ns, name) in self.objects[key]:
                raise ApiError(409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists',
                               {"name": name, "group": rt.group, "kind": rt.plural})
            if rt.namespaced:
                meta["namespace"] = ns
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(self._next_rv())
            meta["creationTimestamp"] = now_ts()
            meta["generation"] = 1
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
                meta.pop(k, None)
            obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
            self.objects[key][(ns, name)] = obj
            self.uids[meta["uid"]] = (key, ns, name)
            self._emit(key, "ADDED", obj, None)
            return copy.deepcopy(obj)

    def mutate(self, key: tuple[str, str], ns: str, name: str, fn: Callable[[dict[str, Any]], None],
               *, expect_uid: str | None = None) -> dict[str, Any] | None:
        """Apply `fn` to the stored object; bump resourceVersion (and generation when spec changed)
        and emit MODIFIED if anything changed. Removes the object when it is terminating and its last
        finalizer went away. Returns the new object (None if it does not exist / was removed)."""
        with self.lock:
            cur = self.objects[key].get((ns, name))
            if cur is None or (expect_uid and cur["metadata"]["uid"] != expect_uid):
                return None
            old = copy.deepcopy(cur)
            fn(cur)
            if cur == old:
                return copy.deepcopy(cur)
            if cur.get("spec") != old.get("spec"):
                cur["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            cur["metadata"]["resourceVersion"] = str(self._next_rv())
            if cur["metadata"].get("deletionTimestamp") and not cur["metadata"].get("finalizers"):
                self._remove(key, ns, name, cur, old)
                return None
            self._emit(key, "MODIFIED", cur, old)
            return copy.deepcopy(cur)

    def _remove(self, key: tuple[str, str], ns: str, name: str, cur: dict[str, Any], old: dict[str, Any] | None) -> None:
        del self.objects[key][(ns, name)]
        self.uids.pop(cur["metadata"]["uid"], None)
        if key == ("", "pods"):
            self.logs.pop((ns, name), None)
            self.log_providers.pop((ns, name), None)
        self._emit(key, "DELETED", cur, old)

    def delete(self, key: tuple[str, str], ns: str, name: str, *, propagation: str | None = None,
               preconditions: dict[str, Any] | None = None, dry_run: bool = False) -> tuple[dict[str, Any], bool]:
        """(the object, removed now?). Finalizers (incl. foregroundDeletion/orphan) keep it Terminating."""
        rt = self.types[key]
        with self.lock:
            cur = self.objects[key].get((ns, name))
            if cur is None:
                raise ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found',
                               {"name": name, "group": rt.group, "kind": rt.plural})
            pre = preconditions or {}
            for k in ("uid", "resourceVersion"):
                if pre.get(k) and pre[k] != cur["metadata"].get(k):
                    label = "UID" if k == "uid" else "ResourceVersion"
                    raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.group_resource} "{name}": '
                                   f"Precondition failed: {label} in precondition: {pre[k]}, {label} in object "
                                   f"meta: {cur['metadata'].get(k)}",
                                   {"name": name, "group": rt.group, "kind": rt.plural})
            if dry_run:
                out = copy.deepcopy(cur)
                out["metadata"].setdefault("deletionTimestamp", now_ts())
                return out, not cur["metadata"].get("finalizers")
            old = copy.deepcopy(cur)
            meta = cur["metadata"]
            fins = list(meta.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in fins and not meta.get("deletionTimestamp"):
                fins.append("foregroundDeletion")
            if propagation == "Orphan" and "orphan" not in fins and not meta.get("deletionTimestamp"):
                fins.append("orphan")
            if not fins:
                meta.setdefault("deletionTimestamp", now_ts())
                meta["resourceVersion"] = str(self._next_rv())
                self._remove(key, ns, name, cur, old)
                return copy.deepcopy(cur), True
            if meta.get("deletionTimestamp") and fins == list(meta.get("finalizers") or []):
                return copy.deepcopy(cur), False  # already terminating: nothing changes
            meta["finalizers"] = fins
            meta.setdefault("deletionTimestamp", now_ts())
            meta.setdefault("deletionGracePeriodSeconds", 0)
            meta["resourceVersion"] = str(self._next_rv())
            self._emit(key, "MODIFIED", cur, old)
            return copy.deepcopy(cur), False

    # -- garbage collection (one pass; the API server runs it in a loop)
    def gc_pass(self) -> None:
        with self.lock:
            live = {uid: where for uid, where in self.uids.items()}
            for key in list(self.objects):
                for (ns, name), o in list(self.objects[key].items()):
                    meta = o["metadata"]
                    fins = meta.get("finalizers") or []
                    if meta.get("deletionTimestamp") and "orphan" in fins:
                        for dkey, dns, dname in self._dependents(meta["uid"], ns):
                            self.mutate(dkey, dns, dname, lambda d, u=meta["uid"]: d["metadata"].__setitem__(
                                "ownerReferences", [r for r in d["metadata"].get("ownerReferences") or [] if r.get("uid") != u]))
                        self.mutate(key, ns, name, lambda d: d["metadata"].__setitem__(
                            "finalizers", [f for f in d["metadata"].get("finalizers") or [] if f != "orphan"]))
                        continue
                    if meta.get("deletionTimestamp") and "foregroundDeletion" in fins:
                        deps = self._dependents(meta["uid"], ns)
                        for dkey, dns, dname in deps:
                            dep = self.objects[dkey].get((dns, dname))
                            if dep is not None and not dep["metadata"].get("deletionTimestamp"):
                                self.delete(dkey, dns, dname, propagation="Foreground")
                        if not deps:
                            self.mutate(key, ns, name, lambda d: d["metadata"].__setitem__(
                                "finalizers", [f for f in d["metadata"].get("finalizers") or [] if f != "foregroundDeletion"]))
                        continue
                    refs = meta.get("ownerReferences") or []
                    if refs and not meta.get("deletionTimestamp"):
                        alive = [r for r in refs if r.get("uid") in live and live[r["uid"]][1] in (ns, "")]
                        if not alive:
                            self.delete(key, ns, name, propagation="Background")

    def _dependents(self, uid: str, ns: str) -> list[tuple[tuple[str, str], str, str]]:
        out = []
        for key, objs in self.objects.items():
            for (dns, dname), o in objs.items():
                if dns == ns and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or []):
                    out.append((key, dns, dname))
        return out


# --------------------------------------------------------------------------------------------------
# fault injection


@dataclass
class _Fault:
    code: int = 500
    hang_s: float = 0.0
    remaining: int | None = None  # requests left; None = time-bounded
    until: float | None = None
    match: Callable[[str, str], bool] | None = None
    message: str = "Internal error occurred: injected fault (kube stand-in)"


class Faults:
    """Make the server misbehave for the next N requests or for T seconds (optionally only for
    requests where `match(method, path)` is true; a str is a regex searched in "METHOD /path")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self.injected = 0

    @staticmethod
    def _matcher(match: str | Callable[[str, str], bool] | None) -> Callable[[str, str], bool] | None:
        if match is None or callable(match):
            return match
        rx = re.compile(match)
        return lambda method, path: bool(rx.search(f"{method} {path}"))

    def fail_next(self, n: int = 1, code: int = 500, match: str | Callable | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(code=code, remaining=n, match=self._matcher(match)))

    def fail_for(self, seconds: float, code: int = 500, match: str | Callable | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(code=code, until=time.monotonic() + seconds, match=self._matcher(match)))

    def hang_next(self, n: int = 1, seconds: float = 30.0, code: int = 500, match: str | Callable | None = None) -> None:
        """Hold the next N matching requests `seconds` before answering `code` (past a client timeout)."""
        with self._lock:
            self._faults.append(_Fault(code=code, hang_s=seconds, remaining=n, match=self._matcher(match)))

    def hang_for(self, seconds: float, hang_s: float = 30.0, code: int = 500, match: str | Callable | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(code=code, hang_s=hang_s, until=time.monotonic() + seconds,
                                       match=self._matcher(match)))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            t = time.monotonic()
            self._faults = [f for f in self._faults
                            if (f.remaining is None or f.remaining > 0) and (f.until is None or f.until > t)]
            for f in self._faults:
                if f.match is None or f.match(method, path):
                    if f.remaining is not None:
                        f.remaining -= 1
                    self.injected += 1
                    return f
        return None


# --------------------------------------------------------------------------------------------------
# the HTTP server


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    user: str
    code: int = 0
    t: float = field(default_factory=time.time)


_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go strconv.ParseBool

_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 410: "Gone", 415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
            500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class KubeApiServer:
    def __init__(self, *, rbac: Rbac, namespace: str = "default", host: str = "127.0.0.1",
                 default_field_validation: str = "Strict", gc_interval_s: float = 0.05):
        self.rbac, self.namespace, self.host = rbac, namespace, host
        self.default_field_validation = default_field_validation
        self.gc_interval_s = gc_interval_s
        self.store = Store()
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.warnings: list[str] = []  # every Warning header sent (fieldValidation=Warn)
        self.tokens: dict[str, User] = {}
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.url = ""
        for sa_ns, sa in sorted(rbac.service_accounts):
            self.token_for(sa, sa_ns)
        self.token_for("default", namespace)

    # -- identities
    def token_for(self, service_account: str, namespace: str | None = None) -> str:
        """The bearer token of `system:serviceaccount:<namespace>:<service_account>` (made on first use)."""
        user = User.service_account(namespace or self.namespace, service_account)
        for tok, u in self.tokens.items():
            if u == user:
                return tok
        tok = "standin-" + _secrets.token_urlsafe(24)
        self.tokens[tok] = user
        return tok

    # -- lifecycle
    def start(self) -> KubeApiServer:
        server = self

        class Handler(_Handler):
            standin = server

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        port = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{port}"
        t = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                             name="kube-standin-http", daemon=True)
        g = threading.Thread(target=self._gc_loop, name="kube-standin-gc", daemon=True)
        self._threads = [t, g]
        t.start()
        g.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.store.cond:
            self.store.cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def _gc_loop(self) -> None:
        while not self._stop.wait(self.gc_interval_s):
            try:
                self.store.gc_pass()
            except Exception:  # pragma: no cover - the GC must never die silently in a test
                import traceback

                traceback.print_exc()

    # -- test-side helpers (no HTTP, no RBAC)
    def add_pod(self, name: str, *, namespace: str | None = None, labels: dict[str, str] | None = None,
                phase: str = "Running", log: str = "", containers: list[str] | None = None,
                service_account: str = "default", owner_references: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Register a Pod (e.g. the KFP step pod a launcher runs in); returns it (with its uid)."""
        ns = namespace or self.namespace
        pod = make_pod(name, labels=labels or {}, containers=containers or ["main"], phase=phase,
                       service_account=service_account)
        if owner_references:
            pod["metadata"]["ownerReferences"] = owner_references
        created = self.store.create(("", "pods"), ns, pod)
        if log:
            self.store.logs[(ns, name)] = log
        return created

    def delete_pod(self, name: str, namespace: str | None = None) -> None:
        self.store.delete(("", "pods"), namespace or self.namespace, name)

    def set_pod_log(self, name: str, text: str, namespace: str | None = None) -> None:
        with self.store.lock:
            self.store.logs[(namespace or self.namespace, name)] = text

    def add_secret(self, name: str, data: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
        import base64

        body = {"metadata": {"name": name}, "type": "Opaque",
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        return self.store.create(("", "secrets"), namespace or self.namespace, body)

    def add_configmap(self, name: str, data: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
        return self.store.create(("", "configmaps"), namespace or self.namespace,
                                 {"metadata": {"name": name}, "data": dict(data)})

    def requests_to(self, method: str, path_regex: str) -> list[RequestRecord]:
        rx = re.compile(path_regex)
        return [r for r in list(self.requests) if r.method == method and rx.search(r.path)]


def make_pod(name: str, *, labels: dict[str, str], containers: list[str] | list[dict[str, Any]], phase: str,
             service_account: str = "default", node: str = "standin-node") -> dict[str, Any]:
    cs = [c if isinstance(c, dict) else {"name": c, "image": "standin"} for c in containers]
    running = phase == "Running"
    terminated = phase in ("Succeeded", "Failed")
    statuses = []
    for c in cs:
        if running:
            state = {"running": {"startedAt": now_ts()}}
        elif terminated:
            state = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                    "reason": "Completed" if phase == "Succeeded" else "Error",
                                    "startedAt": now_ts(), "finishedAt": now_ts()}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        statuses.append({"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": running,
                         "restartCount": 0, "started": running, "state": state})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {"containers": [{k: v for k, v in c.items() if k in ("name", "image", "command", "args", "env",
                                                                   "resources")} for c in cs],
                 "serviceAccountName": service_account, "restartPolicy": "Never", "nodeName": node},
        "status": {"phase": phase, "podIP": "127.0.0.1", "hostIP": "127.0.0.1", "startTime": now_ts(),
                   "containerStatuses": statuses},
    }


# --------------------------------------------------------------------------------------------------
# request handling

_PATH = re.compile(r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
                   r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?/?$")


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


def _json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)

    def resolve(path: str) -> tuple[Any, str | int]:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        last: str | int = parts[-1]
        if isinstance(cur, list):
            last = len(cur) if last == "-" else int(last)
        return cur, last

    for op in ops:
        parent, last = resolve(op["path"])
        kind = op["op"]
        if kind == "test":
            if parent[last] != op["value"]:
                raise ApiError(422, "Invalid", f"the test operation failed at {op['path']}")
        elif kind == "remove":
            del parent[last]
        elif kind == "add":
            if isinstance(parent, list):
                parent.insert(int(last), copy.deepcopy(op["value"]))
            else:
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "replace":
            parent[last]  # noqa: B018 - must exist
            parent[last] = copy.deepcopy(op["value"])
        else:
            raise ApiError(400, "BadRequest", f"unsupported JSON patch op {kind!r}")
    return doc


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    standin: KubeApiServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- plumbing
    def _send_json(self, code: int, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in headers or []:
            self.send_header(k, v)
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped waiting (its timeout): as kube, say nothing
            pass
        self._rec.code = code

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self._rec.code = code

    def _start_chunked(self, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._rec.code = 200

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    def _body(self) -> Any:
        raw = self._raw
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "BadRequest", f"error decoding request body: {e}") from None

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        s = self.standin
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        self._q = {k: v[-1] for k, v in q.items()}
        self._rec = RequestRecord(method, url.path, q, "")
        s.requests.append(self._rec)
        n = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(n) if n > 0 else b""  # always drained: the connection is kept alive
        try:
            fault = s.faults.take(method, url.path)
            if fault is not None:
                if fault.hang_s:
                    s._stop.wait(fault.hang_s)
                raise ApiError(fault.code, _REASONS.get(fault.code, "InternalError"), fault.message)
            if url.path in ("/version", "/healthz", "/readyz", "/livez"):
                if url.path == "/version":
                    self._send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kube-standin",
                                          "platform": "linux/amd64"})
                else:
                    self._send_text(200, "ok")
                return
            user = self._authenticate()
            self._rec.user = user.name
            self._route(method, url.path, user)
        except ApiError as e:
            self._send_json(e.code, e.body())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # a bug in the stand-in: answer 500 with the reason, never hang the client
            import traceback

            traceback.print_exc()
            self._send_json(500, status_body(500, "InternalError", f"kube stand-in bug: {e!r}"))

    def _authenticate(self) -> User:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            user = self.standin.tokens.get(auth[7:].strip())
            if user is not None:
                return user
        raise ApiError(401, "Unauthorized", "Unauthorized")

    def _route(self, method: str, path: str, user: User) -> None:
        s = self.standin
        m = _PATH.match(path)
        if not m:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group = m.group("g") or ""
        version = m.group("cv") or m.group("v")
        ns, plural, name, sub = m.group("ns"), m.group("plural"), m.group("name"), m.group("sub")
        rt = s.store.types.get((group, plural))
        if rt is None or rt.version != version or (sub and sub not in rt.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns is None and rt.namespaced and method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        watch = self._q.get("watch") in _TRUE
        if method == "GET":
            verb = "watch" if watch else ("get" if name else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete" if name else "deletecollection"}[method]
        if method == "POST" and name:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if not s.rbac.allowed(user, verb, group, plural, sub or "", ns or "", name or ""):
            msg = Rbac.forbidden_message(user, verb, group, plural, sub or "", ns or "", name or "")
            raise ApiError(403, "Forbidden", msg, {"name": name, "group": group, "kind": plural} if name
                           else {"group": group, "kind": plural})
        if sub == "log":
            return self._pod_log(ns or "", name or "")
        if verb == "watch":
            return self._watch(rt, ns)
        if verb == "list":
            return self._list(rt, ns)
        if verb == "get":
            obj = s.store.get(rt.key, ns or "", name or "")
            if obj is None:
                raise ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found',
                               {"name": name, "group": rt.group, "kind": rt.plural})
            return self._send_json(200, obj)
        if verb == "delete":
            return self._delete(rt, ns or "", name or "")
        if verb == "deletecollection":
            sel = self._q.get("labelSelector")
            for o in s.store.list(rt.key, ns, sel):
                try:
                    s.store.delete(rt.key, ns or "", o["metadata"]["name"], propagation=self._q.get("propagationPolicy"))
                except ApiError:
                    pass
            return self._send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        if not rt.writable:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if verb == "create":
            return self._create(rt, ns or "")
        return self._update(rt, ns or "", name or "", sub or "", patch=(method == "PATCH"))

    # -- verbs
    def _list(self, rt: ResourceType, ns: str | None) -> None:
        s = self.standin
        try:
            with s.store.lock:
                items = s.store.list(rt.key, ns, self._q.get("labelSelector"), self._q.get("fieldSelector"))
                rv = s.store.rv
        except ValueError as e:
            raise ApiError(400, "BadRequest", str(e)) from None
        cont = ""
        if self._q.get("continue"):
            after = self._q["continue"]
            items = [o for o in items if o["metadata"]["name"] > after]
        limit = int(self._q.get("limit") or 0)
        if limit and len(items) > limit:
            items = items[:limit]
            cont = items[-1]["metadata"]["name"]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
        self._send_json(200, {"apiVersion": rt.api_version, "kind": f"{rt.kind}List", "metadata": meta, "items": items})

    def _watch(self, rt: ResourceType, ns: str | None) -> None:
        s = self.standin
        st = s.store
        try:
            reqs = parse_selector(self._q.get("labelSelector"))
        except ValueError as e:
            raise ApiError(400, "BadRequest", str(e)) from None
        fsel = self._q.get("fieldSelector")
        timeout = float(self._q.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        rv_q = self._q.get("resourceVersion")

        def visible(o: dict[str, Any] | None) -> bool:
            if o is None:
                return False
            return (ns is None or o["metadata"].get("namespace", "") == ns) and \
                selector_matches(o["metadata"].get("labels"), reqs) and field_selector_matches(o, fsel)

        with st.lock:
            if rv_q in (None, "", "0"):
                initial = [("ADDED", o) for o in st.list(rt.key, ns) if visible(o)]
                last = st.rv
            else:
                try:
                    want = int(rv_q)
                except ValueError:
                    raise ApiError(400, "BadRequest", f"invalid resource version: {rv_q}") from None
                if st.events and want < st.oldest_rv - 1:
                    initial, last = None, want
                else:
                    initial, last = [], want
        self._start_chunked()
        try:
            if initial is None:
                gone = status_body(410, "Expired", f"too old resource version: {rv_q} ({st.oldest_rv})")
                self._chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
                return
            for typ, o in initial:
                self._chunk(json.dumps({"type": typ, "object": o}).encode() + b"\n")
            while not s._stop.is_set():
                with st.cond:
                    pending = [e for e in st.events if e.rv > last and e.key == rt.key]
                    if not pending:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        st.cond.wait(min(left, 0.5))
                        continue
                for e in pending:
                    last = e.rv
                    was, now = visible(e.old), visible(e.obj)
                    if e.type == "ADDED" and now:
                        typ = "ADDED"
                    elif e.type == "DELETED" and (now or was):
                        typ = "DELETED"
                    elif e.type == "MODIFIED" and now and was:
                        typ = "MODIFIED"
                    elif e.type == "MODIFIED" and now:
                        typ = "ADDED"
                    elif e.type == "MODIFIED" and was:
                        typ = "DELETED"
                    else:
                        continue
                    self._chunk(json.dumps({"type": typ, "object": e.obj}).encode() + b"\n")
                if time.monotonic() > deadline:
                    return
        except OSError:
            return
        finally:
            self._end_chunked()
            self.close_connection = True

    def _pod_log(self, ns: str, name: str) -> None:
        s = self.standin
        pod = s.store.get(("", "pods"), ns, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        want = self._q.get("container")
        if want and want not in containers:
            raise ApiError(400, "BadRequest", f"container {want} is not valid for pod {name}")
        if not want and len(containers) > 1:
            raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                                              f"[{' '.join(containers)}]")
        if pod["status"].get("phase") == "Pending":
            c = want or (containers[0] if containers else "")
            raise ApiError(400, "BadRequest", f'container "{c}" in pod "{name}" is waiting to start: ContainerCreating')

        def text() -> str:
            provider = s.store.log_providers.get((ns, name))
            if provider is not None:
                try:
                    return provider()
                except Exception:
                    pass
            return s.store.logs.get((ns, name), "")

        def cut(t: str) -> str:
            if self._q.get("tailLines") is not None:
                n = int(self._q["tailLines"])
                lines = t.splitlines(keepends=True)
                t = "".join(lines[-n:]) if n > 0 else ""
            if self._q.get("limitBytes"):
                t = t.encode()[: int(self._q["limitBytes"])].decode(errors="ignore")
            return t

        if self._q.get("follow") not in _TRUE:
            return self._send_text(200, cut(text()))
        self._start_chunked("text/plain")
        sent = 0
        try:
            first = cut(text())
            self._chunk(first.encode())
            sent = len(text())
            while not s._stop.is_set():
                cur = s.store.get(("", "pods"), ns, name)
                t = text()
                if len(t) > sent:
                    self._chunk(t[sent:].encode())
                    sent = len(t)
                if cur is None or cur["status"].get("phase") in ("Succeeded", "Failed"):
                    return
                time.sleep(0.2)
        except OSError:
            return
        finally:
            self._end_chunked()
            self.close_connection = True

    def _field_validation(self) -> str:
        fv = self._q.get("fieldValidation") or self.standin.default_field_validation
        if fv not in ("Ignore", "Warn", "Strict"):
            raise ApiError(400, "BadRequest", f'fieldValidation must be one of "Ignore", "Warn", "Strict", got "{fv}"')
        return fv

    def _admit(self, rt: ResourceType, obj: dict[str, Any], name: str, old: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
        """Schema + metadata admission: (admitted object, warnings) or ApiError 400/422."""
        fv = self._field_validation()
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        if not obj.get("kind"):
            raise ApiError(400, "BadRequest", f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if obj.get("apiVersion") != rt.api_version or obj.get("kind") != rt.kind:
            raise ApiError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not match "
                                              f"the expected API version ({rt.api_version})"
                           if obj.get("apiVersion") != rt.api_version else
                           f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({rt.kind})")
        res = rt.schema.admit(obj, old=old, field_validation=fv) if rt.schema else None
        admitted = res.obj if res else copy.deepcopy(obj)
        warnings: list[str] = []
        if res and res.unknown:
            if fv == "Strict":
                fields = ", ".join(f'unknown field "{u}"' for u in res.unknown)
                raise ApiError(400, "BadRequest", f'{rt.kind} in version "{rt.version}" cannot be handled as a '
                                                  f"{rt.kind}: strict decoding error: {fields}")
            if fv == "Warn":
                warnings = [f'unknown field "{u}"' for u in res.unknown]
        errs: list[FieldError] = validate_object_meta(admitted.get("metadata") or {})
        if res:
            errs += res.errors
        if errs:
            shown = name or (admitted.get("metadata") or {}).get("name") or ""
            msgs = [e.message() for e in errs]
            joined = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
            raise ApiError(422, "Invalid", f'{rt.kind}.{rt.group} "{shown}" is invalid: {joined}',
                           {"name": shown, "group": rt.group, "kind": rt.kind, "causes": [e.cause() for e in errs]})
        return admitted, warnings

    def _warn_headers(self, warnings: list[str]) -> list[tuple[str, str]]:
        self.standin.warnings += warnings
        return [("Warning", f"299 - {json.dumps(w)}") for w in warnings]

    def _create(self, rt: ResourceType, ns: str) -> None:
        s = self.standin
        body = self._body()
        admitted, warnings = self._admit(rt, body, "", None)
        meta = admitted.setdefault("metadata", {})
        if meta.get("namespace") and meta["namespace"] != ns:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        if meta.get("resourceVersion"):
            raise ApiError(500, "InternalError", "Internal error occurred: resourceVersion should not be set on "
                                                 "objects to be created")
        if (rt.schema and rt.schema.status_subresource):
            admitted.pop("status", None)
        for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        if self._q.get("dryRun") == "All":
            with s.store.lock:
                if (ns, meta.get("name")) in s.store.objects[rt.key]:
                    raise ApiError(409, "AlreadyExists", f'{rt.group_resource} "{meta.get("name")}" already exists',
                                   {"name": meta.get("name"), "group": rt.group, "kind": rt.plural})
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_ts(), generation=1, namespace=ns)
            return self._send_json(201, admitted, self._warn_headers(warnings))
        created = s.store.create(rt.key, ns, admitted)
        self._send_json(201, created, self._warn_headers(warnings))

    def _update(self, rt: ResourceType, ns: str, name: str, sub: str, *, patch: bool) -> None:
        s = self.standin
        body = self._body()
        cur = s.store.get(rt.key, ns, name)
        if cur is None:
            raise ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found',
                           {"name": name, "group": rt.group, "kind": rt.plural})
        if patch:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "application/merge-patch+json":
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type "
                                                      "map[string]interface {} (a merge patch must be an object)")
                new = _merge_patch(cur, body)
            elif ctype == "application/json-patch+json":
                try:
                    new = _json_patch(cur, body or [])
                except (KeyError, IndexError, ValueError, TypeError) as e:
                    raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {e!r}") from None
            else:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                                            "accepted media types include: application/json-patch+json, "
                                                            "application/merge-patch+json, application/apply-patch+yaml")
        else:
            new = body
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if not rv:
                raise ApiError(422, "Invalid", f'{rt.kind}.{rt.group} "{name}" is invalid: metadata.resourceVersion: '
                                               f"Invalid value: 0x0: must be specified for an update")
        if (new.get("metadata") or {}).get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        admitted, warnings = self._admit(rt, new, name, cur)
        want_rv = (admitted.get("metadata") or {}).get("resourceVersion")

        def apply(o: dict[str, Any]) -> None:
            if want_rv and want_rv != o["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the '
                                                f"object has been modified; please apply your changes to the latest "
                                                f"version and try again", {"name": name, "group": rt.group, "kind": rt.plural})
            if sub == "status":
                o["status"] = admitted.get("status")
                if o["status"] is None:
                    o.pop("status")
                return
            keep_status = o.get("status")
            meta = o["metadata"]
            system = {k: meta[k] for k in ("uid", "creationTimestamp", "generation", "resourceVersion",
                                            "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name")
                      if k in meta}
            o.clear()
            o.update(copy.deepcopy(admitted))
            o["metadata"] = {**(admitted.get("metadata") or {}), **system}
            if meta.get("deletionTimestamp"):
                # finalizers may only be removed while terminating
                o["metadata"]["finalizers"] = (admitted.get("metadata") or {}).get("finalizers") or []
            if keep_status is not None and rt.schema and rt.schema.status_subresource:
                o["status"] = keep_status
            elif rt.schema and rt.schema.status_subresource:
                o.pop("status", None)

        if self._q.get("dryRun") == "All":
            tmp = copy.deepcopy(cur)
            apply(tmp)
            return self._send_json(200, tmp, self._warn_headers(warnings))
        with s.store.lock:
            out = s.store.mutate(rt.key, ns, name, apply)
        if out is None:  # last finalizer removed from a terminating object: it is gone
            out = copy.deepcopy(cur)
        self._send_json(200, out, self._warn_headers(warnings))

    def _delete(self, rt: ResourceType, ns: str, name: str) -> None:
        s = self.standin
        body = self._body() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        prop = self._q.get("propagationPolicy") or body.get("propagationPolicy")
        if body.get("orphanDependents") is True:
            prop = prop or "Orphan"
        if prop not in (None, "Foreground", "Background", "Orphan"):
            raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                                           f'value: "{prop}": supported values: "Foreground", "Background", "Orphan", "nil"')
        dry = self._q.get("dryRun") == "All" or "All" in (body.get("dryRun") or [])
        obj, removed = s.store.delete(rt.key, ns, name, propagation=prop, preconditions=body.get("preconditions"),
                                      dry_run=dry)
        self._send_json(200 if removed else 202, obj)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

