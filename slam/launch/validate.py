"""Strict checks for every name and URI that crosses into a pod (RayJob, step spec, owner reference).

    from slam.launch import validate
    validate.s3_uri("s3://bucket/runs/train/3f9c/step.json", "step spec")    # returns it, or SlamError
    validate.problems(storage=("s3_uri", root), namespace=("namespace", ns))  # [] or every problem at once

Why so strict: KubeRay's K8sJobMode submitter pastes parts of the RayJob into a `bash -ce` command line
(`--runtime-env-json "<json>"`, `--metadata-json "<json>"`, the entrypoint): inside those double quotes
bash still expands `$(…)`, backticks and `${…}` (tested against the stand-in in
tests/test_cluster_path.py). slam's entrypoint is a constant and its inputs travel as pod env and S3
objects, which no shell reads; these checks are the second wall: a value that reaches a pod is made of
characters no shell treats specially (letters, digits, `.` `_` `-` `/` `=` `+`), or it is refused.
"""

from __future__ import annotations

import re

from slam.errors import SlamError

# S3 bucket names (AWS rules: 3-63 chars, lowercase, digits, dots, hyphens) and keys of plain path
# segments; no `.`/`..` segments, no empty segments.
_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_SEGMENT = r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*"
_S3 = re.compile(rf"s3://(?P<bucket>{_BUCKET})(?P<key>(/{_SEGMENT})*)/?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_UID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# OCI reference: [host[:port]/]path[:tag][@sha256:digest] (distribution/reference grammar, lowercase path)
_IMAGE = re.compile(r"(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|localhost)(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                    r"(?:@sha256:[a-f0-9]{64})?")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def s3_uri(value: str, what: str = "URI") -> str:
    """An s3://bucket/key URI of plain path segments (no shell metacharacters, no `..`)."""
    v = str(value)
    if len(v) > 1024 or not _S3.fullmatch(v):
        raise SlamError(f"{what} {_show(v)} is not a plain s3://bucket/path URI (bucket: 3-63 of a-z 0-9 . -; "
                        f"path segments: letters, digits and . _ - = +; no '..')")
    if any(seg in (".", "..") for seg in v[5:].split("/")):
        raise SlamError(f"{what} {_show(v)} has a '.' or '..' path segment")
    return v


def k8s_name(value: str, what: str = "name", *, max_len: int = 63, dns1035: bool = False) -> str:
    """A Kubernetes object name: a DNS-1123 (or, for RayJobs/Services, DNS-1035) label."""
    v = str(value)
    rx = _DNS1035_LABEL if dns1035 else _DNS1123_LABEL
    if len(v) > max_len or not rx.fullmatch(v):
        kind = "DNS-1035" if dns1035 else "DNS-1123"
        raise SlamError(f"{what} {_show(v)} must be a {kind} label (lowercase letters, digits, '-'; at most {max_len})")
    return v


def namespace(value: str, what: str = "namespace") -> str:
    return k8s_name(value, what)


def subdomain(value: str, what: str = "name") -> str:
    """A DNS-1123 subdomain (Pod names, Secret/ConfigMap names): <= 253 chars of labels joined by '.'."""
    v = str(value)
    if len(v) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(v):
        raise SlamError(f"{what} {_show(v)} must be a DNS-1123 subdomain (lowercase letters, digits, '-', '.')")
    return v


def uid(value: str, what: str = "uid") -> str:
    v = str(value)
    if not _UID.fullmatch(v):
        raise SlamError(f"{what} {_show(v)} is not a Kubernetes UID (8-4-4-4-12 hex digits)")
    return v


def image(value: str, what: str = "image") -> str:
    v = str(value)
    if len(v) > 512 or not _IMAGE.fullmatch(v):
        raise SlamError(f"{what} {_show(v)} is not an image reference like registry.example.com/slam:0.1.0")
    return v


CHECKS = {"s3_uri": s3_uri, "k8s_name": k8s_name, "namespace": namespace, "subdomain": subdomain, "uid": uid,
          "image": image}


def problems(**named: tuple[str, str]) -> list[str]:
    """Run several checks, collect every failure (what=check name): `problems(storage=("s3_uri", root))`."""
    out = []
    for what, (check, value) in named.items():
        try:
            CHECKS[check](value, what)
        except SlamError as e:
            out.append(str(e))
    return out
