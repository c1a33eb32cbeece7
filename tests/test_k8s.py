"""k8s/ offline validation: every overlay renders (kubectl kustomize) and validates; so does the launcher's RayJob.

    .venv/bin/python -m pytest -q tests/test_k8s.py

Built-in kinds: kubernetes-validate --strict (k8s 1.37 schemas). RayCluster/RayJob: our own schema of the
KubeRay CRD fields (tests/k8s_schema.py) + every pod template wrapped as a v1 PodTemplate for kubernetes-validate.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_schema import as_pod_template, pod_templates, validate_ray_object

from slam.launch.rayjob import ClusterShape, RayJobSettings, build_rayjob, rayjob_name

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
K8S_VERSION = "1.37.0"
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.I)


def _kv():
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / request.param)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return request.param, [d for d in yaml.safe_load_all(out.stdout) if d]


def _problems(obj: dict) -> list[str]:
    """Everything wrong with one object, using the checks for its kind."""
    kv = _kv()
    if obj.get("apiVersion", "").startswith("ray.io/"):
        problems = validate_ray_object(obj)
        for where, tpl in pod_templates(obj):
            try:
                kv.validate(as_pod_template("check", tpl), K8S_VERSION, strict=True)
            except kv.ValidationError as e:
                problems.append(f"{where}: {e}")
        return problems
    try:
        kv.validate(obj, K8S_VERSION, strict=True)
    except kv.ValidationError as e:
        return [str(e)]
    return []


def test_overlays_exist():
    assert {"dev", "gpu"} <= set(OVERLAYS)


def test_every_rendered_object_validates(rendered):
    name, docs = rendered
    bad = {f"{d['kind']}/{d['metadata']['name']}": p for d in docs if (p := _problems(d))}
    assert not bad, f"overlay {name}: {bad}"
    assert all(d["metadata"].get("namespace") == "slam" for d in docs if d["kind"] != "Namespace")


def test_overlay_has_the_stack(rendered):
    name, docs = rendered
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for need in [("RayCluster", "slam-ray"), ("Deployment", "slam-mlflow"), ("Service", "slam-mlflow"),
                 ("StatefulSet", "slam-postgres"), ("ServiceAccount", "slam-pipeline"),
                 ("ServiceAccount", "slam-ray"), ("Role", "slam-rayjob-launcher"), ("ConfigMap", "slam-endpoints"),
                 ("NetworkPolicy", "slam-mlflow-ingress"), ("NetworkPolicy", "slam-ray-ingress")]:
        assert need in kinds, f"{name} lacks {need}"
    if name == "dev":
        assert ("StatefulSet", "slam-s3") in kinds and ("Job", "slam-create-bucket") in kinds
    mlflow = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "slam-mlflow")
    c = mlflow["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(c["args"])
    assert "--serve-artifacts" in args and "--artifacts-destination" in args and "postgresql+psycopg2://" in args
    assert {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"} in c["env"]


def test_gpu_overlay_worker_group(rendered):
    name, docs = rendered
    if name != "gpu":
        pytest.skip("GPU overlay only")
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    wg = rc["spec"]["workerGroupSpecs"][0]
    pod = wg["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert pod["tolerations"] and pod["nodeSelector"]
    assert 0 <= wg["minReplicas"] <= wg["maxReplicas"] and rc["spec"]["enableInTreeAutoscaling"] is True
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "slam-endpoints")
    assert "slam-s3:8333" not in cm["data"]["AWS_ENDPOINT_URL"], "gpu overlay must point at a real S3"


def test_rbac_is_namespace_scoped_and_least_privilege(rendered):
    name, docs = rendered
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in (d for d in docs if d["kind"] == "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule.get("apiGroups", [])
            if "rayjobs" in rule["resources"]:
                assert set(rule["verbs"]) <= {"create", "get", "list", "watch", "patch", "delete"}
            else:
                assert set(rule["verbs"]) <= {"get", "list"}, rule
                assert set(rule["resources"]) <= {"pods", "pods/log"}, rule
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["kind"] == "Role"
    assert all(s["namespace"] == "slam" for s in binding["subjects"])


def test_no_cluster_wide_rbac_anywhere_in_k8s():
    for f in K8S.rglob("*.yaml"):
        assert not re.search(r"^kind:\s*Cluster(Role|RoleBinding)\b", f.read_text(), re.M), f


def test_kustomize_never_applies_secrets(rendered):
    """Re-applying the manifests must never overwrite real credentials with placeholders: no Secret is a
    kustomize resource; the examples the user fills live in k8s/secrets/ and hold only placeholders."""
    name, docs = rendered
    assert not [d for d in docs if d["kind"] == "Secret"], f"{name}: kustomize renders a Secret"
    referenced = {ref["secretRef"]["name"] for d in docs for tpl in _pod_specs(d) for c in _containers(tpl)
                  for ref in c.get("envFrom", []) if "secretRef" in ref}
    referenced |= {e["valueFrom"]["secretKeyRef"]["name"] for d in docs for tpl in _pod_specs(d)
                   for c in _containers(tpl) for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    examples = {p.name.split(".")[0]: p for p in (K8S / "secrets").glob("*.env.example")}
    assert {f"slam-{k}" for k in examples} >= referenced, "every Secret a pod reads has an example to fill"
    for path in examples.values():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if line and not line.startswith("#") and SECRET_KEY.search(key):
                assert value == "CHANGE_ME", f"{path.name}: {key} must be a placeholder"


def _pod_specs(doc: dict) -> list[dict]:
    """The pod specs inside a rendered object (Deployments, StatefulSets, Jobs, RayCluster groups)."""
    if doc.get("apiVersion", "").startswith("ray.io/"):
        return [tpl.get("spec", {}) for _, tpl in pod_templates(doc)]
    tpl = doc.get("spec", {}).get("template")
    return [tpl["spec"]] if tpl else []


def _containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod.get("containers", [])


def test_pods_run_read_only_with_seccomp_and_no_privilege(rendered):
    name, docs = rendered
    pods = [(f"{d['kind']}/{d['metadata']['name']}", p) for d in docs for p in _pod_specs(d)]
    assert len(pods) >= 4
    for where, pod in pods:
        ctx = pod.get("securityContext", {})
        assert ctx.get("runAsNonRoot") is True, where
        assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for c in _containers(pod):
            sc = c.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]


def test_services_refuse_placeholder_credentials(rendered):
    """Pods of images that are not slam (MLflow server, PostgreSQL, SeaweedFS) check their Secrets first."""
    _, docs = rendered
    for d in docs:
        for pod in _pod_specs(d):
            reads_secrets = any("secretRef" in r for c in pod.get("containers", []) for r in c.get("envFrom", [])) or \
                any("secretKeyRef" in e.get("valueFrom", {}) for c in pod.get("containers", []) for e in c.get("env", []))
            if reads_secrets and d["kind"] != "RayCluster":  # Ray pods run slam, which checks at start-up
                init = {c["name"]: c for c in pod.get("initContainers", [])}
                assert "check-credentials" in init, f"{d['kind']}/{d['metadata']['name']}"
                assert init["check-credentials"]["command"] == ["python", "-m", "slam.env"]


def test_ray_uses_token_auth_and_its_ports_are_fenced(rendered):
    _, docs = rendered
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    assert rc["spec"]["authOptions"] == {"mode": "token"}
    head = rc["spec"]["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP" and not head.get("enableIngress")
    assert not [d for d in docs if d["kind"] in ("Ingress", "Route") or
                d.get("spec", {}).get("type") in ("NodePort", "LoadBalancer")]
    pol = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "slam-ray-ingress")
    spec = pol["spec"]
    assert spec["podSelector"] == {"matchLabels": {"ray.io/is-ray-node": "yes"}} and spec["policyTypes"] == ["Ingress"]
    open_rules = [r for r in spec["ingress"] if "ports" not in r]
    assert open_rules == [{"from": [{"podSelector": {"matchLabels": {"ray.io/is-ray-node": "yes"}}}]}], \
        "all ports only between Ray pods"
    for rule in spec["ingress"]:
        assert rule.get("from"), "no rule may admit every source"
        if "ports" in rule:
            assert {p["port"] for p in rule["ports"]} <= {8265, 10001}
            assert all("ipBlock" not in src for src in rule["from"])


def test_no_aws_keys_or_private_keys_in_the_repo():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, timeout=60).stdout.split()
    patterns = [re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
                re.compile(r"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}\b", re.I),
                re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----")]
    hits = []
    for rel in files:
        p = REPO / rel
        if not p.is_file() or p.stat().st_size > 2_000_000:
            continue
        try:
            text = p.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{rel}: {pat.pattern}" for pat in patterns if pat.search(text)]
    assert not hits, hits


def test_every_manifest_starts_with_how_to_apply():
    for f in sorted(K8S.rglob("*.yaml")):
        first = f.read_text().lstrip().splitlines()[0]
        assert first.startswith("#"), f"{f.relative_to(REPO)} must start with a comment saying how to apply it"
        head = "".join(f.read_text().splitlines(True)[:6])
        assert "kubectl" in head, f"{f.relative_to(REPO)}: say how to apply it (kubectl …) in the header"


def test_network_policies_limit_mlflow_and_s3_to_the_namespace(rendered):
    _, docs = rendered
    pols = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    for name in ("slam-mlflow-ingress", "slam-s3-ingress"):
        spec = pols[name]["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        for rule in spec["ingress"]:
            # a bare podSelector (no namespaceSelector) admits only pods of the policy's own namespace
            assert all("namespaceSelector" not in src and "ipBlock" not in src for src in rule["from"])


# --------------------------------------------------------------------------------------------------
# the launcher's RayJob, and the checked-in template generated from it


@pytest.mark.parametrize("shape", [
    ClusterShape(),
    ClusterShape(num_workers=4, gpus_per_worker=8, cpus_per_worker="32", memory_per_worker="400Gi",
                 node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
                 tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
])
@pytest.mark.parametrize("settings", [RayJobSettings(), RayJobSettings(queue="gpu-queue", s3_secret="")])
def test_launcher_rayjob_passes_the_same_checks(shape, settings):
    body = build_rayjob(rayjob_name("2f1e0d9c-aaaa-bbbb-cccc-0123456789ab", "tune"),
                        "s3://slam/runs/x/launch/tune/step.json", shape=shape,
                        settings=settings, namespace="slam", run_id="r", step="tune")
    assert _problems(body) == []


def test_pod_template_typo_is_caught():
    body = build_rayjob("slam-train-x", "s3://slam/runs/x/step.json")
    body["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resourcez"] = {}
    assert any("resourcez" in p for p in _problems(body))


def test_rayjob_template_matches_what_the_launcher_creates():
    from slam.cli import build_parser

    path = K8S / "base" / "rayjob-template.yaml"
    text = path.read_text()
    cmd = next(ln for ln in text.splitlines() if ln.startswith("#   slam launch rayjob"))
    args = build_parser().parse_args(shlex.split(cmd[len("#   slam "):]))
    from slam.commands.launch import _command, _spec_uri  # same parsing as the CLI

    _command(args)
    name = rayjob_name(args.run_id, args.step)
    expected = build_rayjob(
        name, _spec_uri(args.storage, name), namespace=args.namespace, run_id=args.run_id,
        step=args.step, outputs=dict(args.output),
        shape=ClusterShape(num_workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                           tolerations=list(args.toleration)))
    assert yaml.safe_load(text) == expected, "regenerate k8s/base/rayjob-template.yaml with the command in its header"
    assert _problems(expected) == []
    # the names it refers to exist in the base
    base = "".join(p.read_text() for p in (K8S / "base").glob("*.yaml") if p.name != path.name)
    s = RayJobSettings()
    for name in (s.s3_secret, s.mlflow_secret, s.endpoints_configmap, s.service_account):
        assert f"name: {name}\n" in base, name


def test_our_schema_fields_exist_in_the_kuberay_crd():
    """When a KubeRay checkout is around (the `fetch` mirror, or SLAM_KUBERAY_REPO), every field our
    schema accepts must exist in the CRD at the same place: catches drift on KubeRay upgrades."""
    import os

    import k8s_schema as ks

    repo = Path(os.environ.get("SLAM_KUBERAY_REPO", "/work/.mirror/ray-project+kuberay/repo"))
    if not repo.exists():
        pytest.skip("no KubeRay checkout (set SLAM_KUBERAY_REPO)")

    def crd(name: str) -> dict:
        text = subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:ray-operator/config/crd/bases/{name}"],
                              capture_output=True, text=True, timeout=60, check=True).stdout
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 25k-line CRDs
        v1 = next(v for v in doc["spec"]["versions"] if v["name"] == "v1")
        return v1["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def check(model, schema, where):
        props = schema.get("properties", {})
        missing = [f for f in model.model_fields if f not in props]
        assert not missing, f"{where}: {missing} not in the CRD"

    job, cluster = crd("ray.io_rayjobs.yaml"), crd("ray.io_rayclusters.yaml")
    check(ks.RayJobSpec, job, "RayJob.spec")
    for spec, where in [(job["properties"]["rayClusterSpec"], "RayJob.spec.rayClusterSpec"), (cluster, "RayCluster.spec")]:
        check(ks.RayClusterSpec, spec, where)
        check(ks.HeadGroupSpec, spec["properties"]["headGroupSpec"], f"{where}.headGroupSpec")
        check(ks.WorkerGroupSpec, spec["properties"]["workerGroupSpecs"]["items"], f"{where}.workerGroupSpecs[]")
        check(ks.AutoscalerOptions, spec["properties"]["autoscalerOptions"], f"{where}.autoscalerOptions")
    assert set(spec["properties"]["workerGroupSpecs"]["items"]["required"]) <= set(
        n for n, f in ks.WorkerGroupSpec.model_fields.items() if f.is_required())
