"""Pytest fixtures for the Kubernetes API + KubeRay stand-in.

    pytest_plugins = ["kubestandin.plugin"]     # in a test module (or in tests/conftest.py's list)

    def test_x(kube_api):        # API server only (no Ray): RayJob CRUD/watch, validation, RBAC, faults
    def test_y(kuberay):         # API server + KubeRay operator on the session's local Ray head
    def test_z(kuberay_factory): # kuberay_factory(operator_config=OperatorConfig(...), namespace=...)
    def test_w(local_ray):       # the session's LocalRayCluster itself (token auth on, 127.0.0.1)

`local_ray` is one Ray head for the whole session (~10-15 s to start on 2 cores); set
KUBE_STANDIN_RAY_WORKERS=2 to add two worker nodes (own resources/temp dir each; ~+15 s).
Everything is stopped at the end: the operator stops and forgets every Ray job it submitted
when its test ends, the Ray processes go at session end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .localray import LocalRayCluster
from .operator import OperatorConfig
from .standin import KubeStandin


@pytest.fixture(scope="session")
def local_ray() -> Iterator[LocalRayCluster]:
    workers = int(os.environ.get("KUBE_STANDIN_RAY_WORKERS", "0") or 0)
    cluster = LocalRayCluster(workers=workers)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture()
def kube_api() -> Iterator[KubeStandin]:
    kube = KubeStandin().start()
    try:
        yield kube
    finally:
        kube.stop()


@pytest.fixture()
def kuberay_factory(local_ray: LocalRayCluster) -> Iterator[Callable[..., KubeStandin]]:
    made: list[KubeStandin] = []

    def make(*, operator_config: OperatorConfig | None = None, **kw: Any) -> KubeStandin:
        kube = KubeStandin(ray=local_ray, operator_config=operator_config, **kw).start()
        made.append(kube)
        return kube

    try:
        yield make
    finally:
        for kube in made:
            kube.stop()
        for kube in made:
            errs = kube.operator.errors if kube.operator else []
            assert not errs, "kube stand-in operator raised:\n" + "\n".join(errs)


@pytest.fixture()
def kuberay(kuberay_factory: Callable[..., KubeStandin]) -> KubeStandin:
    return kuberay_factory()
