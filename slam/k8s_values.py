"""Kubernetes names and values, checked where they enter slam (CLI flags, compile options), before any spec.

    namespace_problem("Bad NS")          # -> "namespace 'Bad NS' must be a DNS-1123 label (…)"
    label_problem("=gpu", "")            # a node selector / label key+value
    quantity_problem("four cores")       # a resource quantity (cpu "4", "500m"; memory "16Gi")

Each returns None when the value is valid, else one sentence; `check(*problems)` raises them together.
The rules are the API server's (apimachinery validation): rejected here instead of at apply time, or
worse, accepted and never scheduled.
"""

from __future__ import annotations

import re

from slam.errors import SlamError

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")  # label name / value
_QUANTITY = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?")


def namespace_problem(ns: str) -> str | None:
    if len(ns) > 63 or not _DNS1123_LABEL.fullmatch(ns):
        return f"namespace {ns!r} must be a DNS-1123 label (lowercase letters, digits, '-', at most 63 characters)"
    return None


def name_problem(name: str, what: str) -> str | None:
    """A Secret/ConfigMap/ServiceAccount name (DNS-1123 subdomain)."""
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        return f"{what} {name!r} must be a DNS-1123 name (lowercase letters, digits, '-', '.')"
    return None


def label_key_problem(key: str, what: str = "label") -> str | None:
    prefix, slash, name = key.rpartition("/")
    if (not name or len(name) > 63 or not _NAME.fullmatch(name)
            or (slash and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)))):
        return (f"{what} key {key!r} must be [prefix/]name: name 1-63 letters, digits, '-', '_', '.' (alphanumeric "
                "at both ends), prefix a DNS subdomain")
    return None


def label_problem(key: str, value: str, what: str = "label") -> str | None:
    problem = label_key_problem(key, what)
    if problem:
        return problem
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return f"{what} {key}={value!r}: the value must be empty or 1-63 letters, digits, '-', '_', '.'"
    return None


def quantity_problem(q: str, what: str = "quantity", allow_zero: bool = False) -> str | None:
    text = str(q).strip()
    if not _QUANTITY.fullmatch(text):
        return f"{what} {q!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)"
    number = float(re.match(r"\+?(\d+(\.\d*)?|\.\d+)", text).group(0).lstrip("+"))
    if number == 0 and not allow_zero:
        return f"{what} must be > 0, got {q!r}"
    return None


def check(*problems: str | None) -> None:
    found = [p for p in problems if p]
    if found:
        raise SlamError("; ".join(found))
