"""Namespace RBAC the way kube-apiserver's RBAC authorizer evaluates it, from the project's manifests.

    rbac = Rbac.from_files([K8S / "base" / "rbac.yaml"], namespace="slam")
    rbac.allowed(User.service_account("slam", "slam-pipeline"), "create", "ray.io", "rayjobs", namespace="slam")
    rbac.forbidden_message(user, "get", "", "pods", "log", "slam", "p-1")   # the API server's 403 text

Roles/RoleBindings without a namespace land in `namespace` (what `kubectl apply -n`/kustomize does);
a RoleBinding's ServiceAccount subject without a namespace means the binding's namespace.
ClusterRoles/ClusterRoleBindings in the files are honoured too. There is no superuser: the stand-in's
own controllers write through the store, not through HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        return cls(f"system:serviceaccount:{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


@dataclass
class Rule:
    api_groups: list[str]
    resources: list[str]
    verbs: list[str]
    resource_names: list[str] = field(default_factory=list)

    def matches(self, verb: str, api_group: str, resource: str, name: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.api_groups and api_group not in self.api_groups:
            return False
        if not any(r == "*" or r == resource or (r.endswith("/*") and resource.startswith(r[:-1]))
                   or (r.startswith("*/") and "/" in resource and resource.split("/", 1)[1] == r[2:])
                   for r in self.resources):
            return False
        return not self.resource_names or name in self.resource_names


class Rbac:
    def __init__(self, docs: list[dict[str, Any]], namespace: str):
        self.namespace = namespace
        self.roles: dict[tuple[str, str], list[Rule]] = {}  # (namespace or "", name) -> rules
        self.bindings: list[dict[str, Any]] = []
        self.service_accounts: set[tuple[str, str]] = set()
        for d in docs:
            if not isinstance(d, dict):
                continue
            kind, meta = d.get("kind"), d.get("metadata") or {}
            ns = meta.get("namespace") or namespace
            if kind in ("Role", "ClusterRole"):
                key = (ns if kind == "Role" else "", meta["name"])
                self.roles[key] = [Rule(r.get("apiGroups") or [], r.get("resources") or [], r.get("verbs") or [],
                                        r.get("resourceNames") or []) for r in d.get("rules") or []]
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                self.bindings.append({"kind": kind, "namespace": ns if kind == "RoleBinding" else "",
                                      "roleRef": d["roleRef"], "subjects": d.get("subjects") or []})
            elif kind == "ServiceAccount":
                self.service_accounts.add((ns, meta["name"]))

    @classmethod
    def from_files(cls, paths: list[Path], namespace: str) -> Rbac:
        docs: list[dict[str, Any]] = []
        for p in paths:
            docs += [d for d in yaml.safe_load_all(Path(p).read_text()) if d]
        return cls(docs, namespace)

    def _subject_matches(self, subj: dict[str, Any], user: User, binding_ns: str) -> bool:
        kind = subj.get("kind")
        if kind == "ServiceAccount":
            ns = subj.get("namespace") or binding_ns
            return user.name == f"system:serviceaccount:{ns}:{subj.get('name')}"
        if kind == "User":
            return user.name == subj.get("name")
        if kind == "Group":
            return subj.get("name") in user.groups
        return False

    def allowed(self, user: User, verb: str, api_group: str, resource: str, subresource: str = "",
                namespace: str = "", name: str = "") -> bool:
        res = f"{resource}/{subresource}" if subresource else resource
        for b in self.bindings:
            if b["kind"] == "RoleBinding" and b["namespace"] != namespace:
                continue  # a RoleBinding grants only inside its namespace (never cluster-scope requests)
            if not any(self._subject_matches(s, user, b["namespace"]) for s in b["subjects"]):
                continue
            ref = b["roleRef"]
            key = (b["namespace"], ref["name"]) if ref.get("kind") == "Role" else ("", ref["name"])
            if any(r.matches(verb, api_group, res, name) for r in self.roles.get(key, [])):
                return True
        return False

    @staticmethod
    def forbidden_message(user: User, verb: str, api_group: str, resource: str, subresource: str,
                          namespace: str, name: str) -> str:
        """Exactly how kube-apiserver words an RBAC denial."""
        gr = f"{resource}.{api_group}" if api_group else resource
        who = f'{gr} "{name}"' if name else gr
        res = f"{resource}/{subresource}" if subresource else resource
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        return (f'{who} is forbidden: User "{user.name}" cannot {verb} resource "{res}" in API group '
                f'"{api_group}"{where}')
