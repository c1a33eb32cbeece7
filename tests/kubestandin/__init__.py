"""Kubernetes API server + KubeRay operator stand-in for tests (no cluster can run on these machines).

    from kubestandin import KubeStandin, LocalRayCluster, OperatorConfig
    pytest_plugins = ["kubestandin.plugin"]      # fixtures: kube_api, kuberay, kuberay_factory, local_ray

See apiserver.py (what is served), operator.py (which KubeRay behaviours are mirrored, from which
file/version, and which are not), localray.py (Ray with token auth on 127.0.0.1), plugin.py (fixtures).
"""

from .apiserver import KubeApiServer
from .localray import LocalRayCluster
from .operator import KubeRayOperator, OperatorConfig
from .rbac import Rbac, User
from .standin import KubeStandin, rayjob_schema

__all__ = ["KubeApiServer", "KubeRayOperator", "KubeStandin", "LocalRayCluster", "OperatorConfig", "Rbac", "User",
           "rayjob_schema"]
