"""The Kubernetes API + KubeRay operator stand-in (tests/kubestandin), driven through the real
`kubernetes` client: RayJob CRUD/watch against KubeRay's published CRD schema, RBAC from k8s/base,
fault injection, and RayJobs that really run on a local Ray head with token auth.

    pytest -q tests/test_kube_standin.py                 # ~1 min on 2 cores (one Ray head for the file)
    KUBE_STANDIN_RAY_WORKERS=2 pytest -q tests/test_kube_standin.py   # + 2 Ray worker nodes
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch
from kubestandin import KubeStandin, OperatorConfig

from slam.launch.kuberay import RayJobRunner
from slam.launch.rayjob import build_rayjob, rayjob_name

REPO = Path(__file__).resolve().parents[1]
G, V, NS, PL = "ray.io", "v1", "slam", "rayjobs"


def rayjob(name: str, entrypoint: str = "python -c \"print('hi')\"", **spec) -> dict:
    """A minimal valid RayJob (the head template is all the CRD requires)."""
    head = {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}}}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "slam", "test": name}},
            "spec": {"entrypoint": entrypoint, "rayClusterSpec": {"headGroupSpec": head}, **spec}}


def api_error(fn, *a, **kw) -> client.ApiException:
    with pytest.raises(client.ApiException) as ei:
        fn(*a, **kw)
    return ei.value


def phase(kube: KubeStandin, name: str) -> tuple[str, str]:
    return kube.status_of(kube.rayjob(name))


# --------------------------------------------------------------------------------------------------
# API server only (no Ray)


def test_rayjob_create_get_list_watch_delete_round_trip(kube_api):
    api = kube_api.custom_objects()
    rv0 = api.list_namespaced_custom_object(G, V, NS, PL)["metadata"]["resourceVersion"]
    events: list[dict] = []

    def follow():
        for e in watch.Watch().stream(api.list_namespaced_custom_object, G, V, NS, PL, resource_version=rv0,
                                      label_selector="test=rt-1", timeout_seconds=3):
            events.append(e["raw_object"] | {"type": e["type"]})
            if e["type"] == "DELETED":
                return

    t = threading.Thread(target=follow)
    t.start()
    body = rayjob("rt-1")
    body["status"] = {"jobDeploymentStatus": "Complete"}  # ignored: status is a subresource
    created = api.create_namespaced_custom_object(G, V, NS, PL, body)
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("rt-2"))
    meta = created["metadata"]
    assert meta["namespace"] == NS and meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) > int(rv0) and "status" not in created
    assert created["spec"]["submissionMode"] == "K8sJobMode" and created["spec"]["backoffLimit"] == 0  # CRD defaults
    assert api.get_namespaced_custom_object(G, V, NS, PL, "rt-1")["metadata"]["uid"] == meta["uid"]
    assert [o["metadata"]["name"] for o in api.list_namespaced_custom_object(G, V, NS, PL, label_selector="test=rt-1")["items"]] == ["rt-1"]
    assert len(api.list_namespaced_custom_object(G, V, NS, PL, label_selector="test in (rt-1,rt-2),app.kubernetes.io/name=slam")["items"]) == 2
    assert api.list_namespaced_custom_object(G, V, NS, PL, label_selector="test=nope")["items"] == []
    e = api_error(api.create_namespaced_custom_object, G, V, NS, PL, rayjob("rt-1"))
    assert (e.status, yaml.safe_load(e.body)["reason"]) == (409, "AlreadyExists")

    gone = api.delete_namespaced_custom_object(G, V, NS, PL, "rt-1", body={"propagationPolicy": "Foreground"})
    assert gone["metadata"]["deletionTimestamp"] and "foregroundDeletion" in gone["metadata"]["finalizers"]
    deadline = time.monotonic() + 5
    while kube_api.rayjob("rt-1") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    e = api_error(api.get_namespaced_custom_object, G, V, NS, PL, "rt-1")
    assert e.status == 404 and yaml.safe_load(e.body)["message"] == 'rayjobs.ray.io "rt-1" not found'
    t.join(10)
    assert [ev["type"] for ev in events] == ["ADDED", "MODIFIED", "DELETED"], events  # rt-2 filtered out
    rvs = [int(ev["metadata"]["resourceVersion"]) for ev in events]
    assert rvs == sorted(rvs) and events[1]["metadata"]["deletionTimestamp"]

    # a resourceVersion older than the event window: 410 Expired, as after etcd compaction
    kube_api.api.store.events = deque(list(kube_api.api.store.events)[-2:], maxlen=2)
    e = api_error(lambda: list(watch.Watch().stream(api.list_namespaced_custom_object, G, V, NS, PL,
                                                    resource_version=rv0, timeout_seconds=1)))
    assert e.status == 410


def test_unknown_fields_are_rejected_and_values_checked_against_the_kuberay_crd(kube_api):
    api = kube_api.custom_objects()
    typo = rayjob("typo")
    typo["spec"]["shutdownAfterJobFinish"] = True
    typo["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    e = api_error(api.create_namespaced_custom_object, G, V, NS, PL, typo)
    msg = yaml.safe_load(e.body)["message"]
    assert e.status == 400 and "strict decoding error" in msg, msg  # fieldValidation=Strict answers 400 BadRequest
    assert 'unknown field "spec.shutdownAfterJobFinish"' in msg
    assert 'unknown field "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].imagee"' in msg
    # Warn (a real API server's default): created, unknown fields dropped, a Warning header
    warned = api.create_namespaced_custom_object(G, V, NS, PL, typo, field_validation="Warn")
    assert "shutdownAfterJobFinish" not in warned["spec"] and kube_api.api.warnings

    bad = rayjob("bad-values", backoffLimit="three", submitterConfig={"backoffLimit": 2**31})
    bad["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0].pop("name")
    e = api_error(api.create_namespaced_custom_object, G, V, NS, PL, bad)
    body = yaml.safe_load(e.body)
    assert (e.status, body["reason"]) == (422, "Invalid"), body
    fields = {c["field"] for c in body["details"]["causes"]}
    assert fields == {"spec.backoffLimit", "spec.submitterConfig.backoffLimit",
                      "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].name"}, body
    assert body["message"].startswith('RayJob.ray.io "bad-values" is invalid: [')

    e = api_error(api.create_namespaced_custom_object, G, V, NS, PL, rayjob("x" * 254))
    assert e.status == 422 and "metadata.name: Invalid value" in e.body and "253 characters" in e.body
    e = api_error(api.create_namespaced_custom_object, G, V, NS, PL, rayjob("Bad_Name"))
    assert e.status == 422 and "RFC 1123 subdomain" in e.body
    # the CRD's CEL rule on deletionStrategy
    e = api_error(api.create_namespaced_custom_object, G, V, NS, PL,
                  rayjob("half-legacy", deletionStrategy={"onSuccess": {"policy": "DeleteSelf"}}))
    assert e.status == 422 and "deletionStrategy requires either BOTH onSuccess and onFailure" in e.body


def test_the_projects_rayjobs_validate_against_the_crd(kube_api):
    """k8s/base/rayjob-template.yaml and a fresh build_rayjob() pass strict admission unchanged."""
    api = kube_api.custom_objects()
    template = yaml.safe_load((REPO / "k8s" / "base" / "rayjob-template.yaml").read_text())
    built = build_rayjob(rayjob_name("run-1", "train"), "s3://bkt/run-1/step.json",
                         namespace=NS, run_id="run-1", step="train", outputs={"delta": "s3://bkt/d"})
    for body in (template, built):
        res = kube_api.schema.admit(body)
        assert (res.errors, res.unknown, res.skipped_rules) == ([], [], []), body["metadata"]["name"]
        created = api.create_namespaced_custom_object(G, V, NS, PL, body, dry_run="All")
        assert created["metadata"]["name"] == body["metadata"]["name"]
    assert kube_api.rayjobs() == []  # dryRun stored nothing


def test_rbac_follows_the_projects_role(kube_api):
    body = rayjob("rbac-1")
    pipeline, core = kube_api.custom_objects("slam-pipeline"), kube_api.core_v1("slam-pipeline")
    pipeline.create_namespaced_custom_object(G, V, NS, PL, body)
    kube_api.add_pod("step-1", labels={"job-name": "x"}, log="one\ntwo\nthree\n")
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector="job-name=x").items] == ["step-1"]
    assert core.read_namespaced_pod_log("step-1", NS, tail_lines=2) == "two\nthree\n"

    def forbidden(fn, *a, **kw) -> str:
        e = api_error(fn, *a, **kw)
        assert e.status == 403, e.body
        return yaml.safe_load(e.body)["message"]

    # a service account the RoleBinding does not name (Kubeflow's default, the Ray pods' own)
    for sa in ("default", "slam-ray"):
        msg = forbidden(kube_api.custom_objects(sa).create_namespaced_custom_object, G, V, NS, PL, rayjob("rbac-2"))
        assert msg == (f'rayjobs.ray.io is forbidden: User "system:serviceaccount:slam:{sa}" cannot create resource '
                       f'"rayjobs" in API group "ray.io" in the namespace "slam"')
    # verbs/subresources the Role lacks
    assert "cannot patch resource" in forbidden(kube_api.custom_objects("slam-ray").patch_namespaced_custom_object,
                                                G, V, NS, PL, "rbac-1", {"spec": {"suspend": True}})
    assert 'cannot get resource "rayjobs/status"' in forbidden(pipeline.get_namespaced_custom_object_status,
                                                               G, V, NS, PL, "rbac-1")
    assert "cannot watch resource \"pods\"" in forbidden(core.list_namespaced_pod, NS, watch=True, timeout_seconds=1,
                                                         _preload_content=False)
    assert "at the cluster scope" in forbidden(pipeline.list_cluster_custom_object, G, V, PL)
    assert "cannot list resource \"secrets\"" in forbidden(core.list_namespaced_secret, NS)
    # the same SA in another namespace
    forbidden(kube_api.custom_objects("slam-pipeline", namespace="kubeflow").list_namespaced_custom_object, G, V, NS, PL)
    # no token / an unknown token
    e = api_error(kube_api.custom_objects(None).list_namespaced_custom_object, G, V, NS, PL)
    assert (e.status, yaml.safe_load(e.body)["reason"]) == (401, "Unauthorized")
    cfg = kube_api.configuration()
    cfg.api_key = {"authorization": "not-a-token"}
    e = api_error(client.CustomObjectsApi(client.ApiClient(cfg)).list_namespaced_custom_object, G, V, NS, PL)
    assert e.status == 401


def test_fault_injection_500s_and_hangs_then_recovery(kube_api):
    api = kube_api.custom_objects()
    kube_api.faults.fail_next(3)
    codes = []
    for _ in range(4):
        try:
            api.list_namespaced_custom_object(G, V, NS, PL)
            codes.append(200)
        except client.ApiException as e:
            codes.append(e.status)
            assert yaml.safe_load(e.body)["reason"] == "InternalError"
    assert codes == [500, 500, 500, 200]
    kube_api.faults.fail_for(0.6, code=503, match=r"^POST ")  # only writes fail, for 0.6 s
    assert api_error(api.create_namespaced_custom_object, G, V, NS, PL, rayjob("f-1")).status == 503
    api.list_namespaced_custom_object(G, V, NS, PL)  # reads unaffected
    time.sleep(0.7)
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("f-1"))
    # Hang past the client's timeout. Two client facts this shows: kubernetes==30.1.0 ignores a float
    # _request_timeout (only int or a (connect, read) tuple), and urllib3 retries a timed-out GET 3 times.
    kube_api.faults.hang_next(1, seconds=5)
    t0 = time.monotonic()
    assert api.get_namespaced_custom_object(G, V, NS, PL, "f-1", _request_timeout=(2, 0.3))["metadata"]["name"] == "f-1"
    assert time.monotonic() - t0 < 2  # one silent retry
    kube_api.faults.hang_next(4, seconds=5)
    with pytest.raises(Exception) as ei:  # urllib3 MaxRetryError(ReadTimeoutError)
        api.get_namespaced_custom_object(G, V, NS, PL, "f-1", _request_timeout=(2, 0.3))
    assert "read timed out" in str(ei.value).lower() and time.monotonic() - t0 < 4
    assert api.get_namespaced_custom_object(G, V, NS, PL, "f-1")["metadata"]["name"] == "f-1"
    assert kube_api.faults.injected == 3 + 1 + 1 + 4


def test_owner_reference_to_a_pod_cascades_the_delete(kube_api):
    """A RayJob owned by the KFP step pod goes when the pod goes (GC), and a dangling owner deletes it."""
    api = kube_api.custom_objects()
    pod = kube_api.add_pod("kfp-step")
    owned = rayjob("owned")
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "kfp-step",
                                             "uid": pod["metadata"]["uid"], "blockOwnerDeletion": True}]
    api.create_namespaced_custom_object(G, V, NS, PL, owned)
    dangling = rayjob("dangling")
    dangling["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "gone", "uid": "0000"}]
    api.create_namespaced_custom_object(G, V, NS, PL, dangling)
    time.sleep(0.3)
    assert kube_api.rayjob("owned") is not None and kube_api.rayjob("dangling") is None
    kube_api.delete_pod("kfp-step")
    deadline = time.monotonic() + 5
    while kube_api.rayjob("owned") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kube_api.rayjob("owned") is None


# --------------------------------------------------------------------------------------------------
# with the operator and a real Ray head


@pytest.mark.integration
def test_local_ray_has_token_auth_and_listens_on_loopback_only(local_ray):
    import psutil

    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(local_ray.dashboard_url + "/api/jobs/", timeout=5)
    assert ei.value.code == 401
    req = urllib.request.Request(local_ray.dashboard_url + "/api/jobs/", headers={"Authorization": "Bearer wrong"})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    assert ei.value.code == 403
    assert isinstance(local_ray.job_client().list_jobs(), list)
    local_ray._collect_tree()
    listening = set()
    for pid in local_ray.alive_pids():
        try:
            listening |= {c.laddr.ip for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"}
        except psutil.Error:
            pass
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


@pytest.mark.integration
def test_rayjob_runs_on_ray_and_its_log_is_readable(kuberay):
    api, core = kuberay.custom_objects(), kuberay.core_v1()
    entry = "python -c \"import os; print('hi from', os.environ['GREETING'], os.environ['AWS_ACCESS_KEY_ID'])\""
    body = rayjob("hi", entry, runtimeEnvYAML="env_vars:\n  GREETING: rayjob\n")
    head = body["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["env"] = [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "id"}}}]
    api.create_namespaced_custom_object(G, V, NS, PL, body)
    time.sleep(1.0)  # the Secret is missing: the head pod cannot start
    assert phase(kuberay, "hi") == ("Initializing", "")
    assert kuberay.pods("ray.io/node-type=head")[0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == \
        "CreateContainerConfigError"
    kuberay.add_secret("s3", {"id": "AKIA-standin"})
    seen: list[tuple[str, str]] = []

    def done(o):
        s = kuberay.status_of(o)
        if not seen or seen[-1] != s:
            seen.append(s)
        return s[0] in ("Complete", "Failed")

    obj = kuberay.wait_rayjob("hi", done, timeout=60)
    st = obj["status"]
    assert (st["jobDeploymentStatus"], st.get("jobStatus"), st["succeeded"], st["failed"]) == ("Complete", "SUCCEEDED", 1, 0), (st.get("reason"), st.get("message"))
    assert ("Running", "RUNNING") in seen or ("Running", "PENDING") in seen, seen
    assert st["startTime"] <= st["rayJobInfo"]["startTime"] <= st["rayJobInfo"]["endTime"] <= st["endTime"]
    assert st["dashboardURL"] == kuberay.ray.dashboard_address and st["jobId"].startswith("hi-")
    assert obj["metadata"]["finalizers"] == ["ray.io/rayjob-finalizer"]
    res = kuberay.schema.admit_subtree(st, "status")  # what the operator writes fits the CRD, too
    assert (res.errors, res.unknown) == ([], [])
    pods = core.list_namespaced_pod(NS, label_selector="job-name=hi").items
    assert [p.status.phase for p in pods] == ["Succeeded"]
    log = core.read_namespaced_pod_log(pods[0].metadata.name, NS, tail_lines=20)
    assert "hi from rayjob AKIA-standin" in log and "submitted successfully" in log
    assert core.read_namespaced_pod_log(pods[0].metadata.name, NS, tail_lines=1) == "hi from rayjob AKIA-standin\n"
    (attempt,) = kuberay.history("hi")
    assert attempt.entrypoint == "python -c 'import os; print('\"'\"'hi from'\"'\"', os.environ['\"'\"'GREETING'\"'\"'], os.environ['\"'\"'AWS_ACCESS_KEY_ID'\"'\"'])'"


@pytest.mark.integration
def test_failed_entrypoint_is_retried_backofflimit_times_then_failed(kuberay):
    api = kuberay.custom_objects()
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("boom", "python -c 'import sys; print(\"boom\"); sys.exit(3)'",
                                                             backoffLimit=1))
    seen = []
    obj = kuberay.wait_rayjob("boom", lambda o: seen.append(kuberay.status_of(o)) or
                              kuberay.status_of(o)[0] == "Failed", timeout=60)
    st = obj["status"]
    assert (st["jobStatus"], st["reason"], st["failed"], st["succeeded"]) == ("FAILED", "AppFailed", 2, 0), st
    assert "exit code 3" in st["message"]
    assert ("Retrying", "FAILED") in seen
    attempts = kuberay.history("boom")
    assert len(attempts) == 2 and attempts[0].cluster != attempts[1].cluster
    assert [a.status for a in attempts] == ["FAILED", "FAILED"]


@pytest.mark.integration
def test_active_deadline_fails_the_rayjob_and_the_cluster_shutdown_stops_the_ray_job(kuberay):
    api = kuberay.custom_objects()
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob(
        "slow", "python -c 'import time; print(\"sleeping\", flush=True); time.sleep(120)'", activeDeadlineSeconds=3,
        backoffLimit=2, shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=0))
    obj = kuberay.wait_rayjob("slow", lambda o: kuberay.status_of(o)[0] == "Failed", timeout=30)
    st = obj["status"]
    assert st["reason"] == "DeadlineExceeded" and st["failed"] == 1  # never retried for a deadline
    assert "passed the activeDeadlineSeconds" in st["message"] and "ActiveDeadlineSeconds: 3" in st["message"]
    deadline = time.monotonic() + 30
    while kuberay.rayclusters() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kuberay.rayclusters() == []  # shutdownAfterJobFinishes, ttl 0: the cluster (and the Ray job) went
    (attempt,) = kuberay.history("slow")
    assert (attempt.status, attempt.stopped_by, attempt.deleted_from_ray) == ("STOPPED", "cluster-deleted", True)
    assert "sleeping" in attempt.logs
    pod = kuberay.pods("job-name=slow")[0]  # the submitter Job stays; its log too
    assert "sleeping" in kuberay.core_v1().read_namespaced_pod_log(pod["metadata"]["name"], NS)


@pytest.mark.integration
def test_deleting_a_running_rayjob_stops_its_ray_job(kuberay):
    """KubeRay's finalizer calls StopJob; with Foreground propagation (what the launcher sends) the garbage
    collector may delete the cluster first, which kills the job too - either way the Ray job ends STOPPED."""
    api = kuberay.custom_objects()
    for name in ("victim-fg", "victim-bg"):
        api.create_namespaced_custom_object(G, V, NS, PL, rayjob(name, "python -c 'import time; time.sleep(120)'"))
    for name in ("victim-fg", "victim-bg"):
        kuberay.wait_rayjob(name, lambda o: kuberay.status_of(o) == ("Running", "RUNNING"), timeout=30)
    resp = api.delete_namespaced_custom_object(G, V, NS, PL, "victim-fg", body={"propagationPolicy": "Foreground"})
    assert resp["metadata"]["deletionTimestamp"]
    assert set(resp["metadata"]["finalizers"]) == {"ray.io/rayjob-finalizer", "foregroundDeletion"}
    api.delete_namespaced_custom_object(G, V, NS, PL, "victim-bg")  # Background, the default
    kuberay.wait_rayjob("victim-fg", lambda o: o is None, timeout=30)  # Foreground: gone once the cluster is gone
    kuberay.wait_rayjob("victim-bg", lambda o: o is None, timeout=30)
    deadline = time.monotonic() + 30
    while (kuberay.rayclusters() or kuberay.pods()) and time.monotonic() < deadline:
        time.sleep(0.1)
    (fg,) = kuberay.history("victim-fg")
    (bg,) = kuberay.history("victim-bg")
    assert (fg.status, fg.deleted_from_ray) == ("STOPPED", True) and fg.stopped_by in ("rayjob-deleted", "cluster-deleted")
    assert (bg.status, bg.stopped_by, bg.deleted_from_ray) == ("STOPPED", "rayjob-deleted", True)
    assert kuberay.rayclusters() == [] and kuberay.jobs() == [] and kuberay.pods() == []


@pytest.mark.integration
def test_shutdown_ttl_suspend_and_validation(kuberay):
    api = kuberay.custom_objects()
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("ttl", shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=2))
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("keep"))
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("sus", suspend=True, shutdownAfterJobFinishes=True))
    long_name = "a" * 48  # a valid object name, but longer than KubeRay's 47: accepted, then ValidationFailed
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob(long_name))
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("ttl-alone", ttlSecondsAfterFinished=5))
    api.create_namespaced_custom_object(G, V, NS, PL, rayjob("http", submissionMode="HTTPMode"))

    obj = kuberay.wait_rayjob(long_name, lambda o: kuberay.status_of(o)[0] == "ValidationFailed", timeout=10)
    assert obj["status"]["message"] == "The RayJob metadata is invalid: RayJob name should be no more than 47 characters"
    assert "TTLSecondsAfterFinished" in kuberay.wait_rayjob(
        "ttl-alone", lambda o: kuberay.status_of(o)[0] == "ValidationFailed", timeout=10)["status"]["message"]
    kuberay.wait_rayjob("sus", lambda o: kuberay.status_of(o)[0] == "Suspended", timeout=10)
    assert kuberay.history("sus") == []
    kuberay.api.store.mutate(("ray.io", "rayjobs"), NS, "sus", lambda o: o["spec"].__setitem__("suspend", False))  # Kueue admits

    ttl = kuberay.wait_rayjob("ttl", lambda o: kuberay.status_of(o)[0] == "Complete", timeout=60)
    cluster = ttl["status"]["rayClusterName"]
    assert any(c["metadata"]["name"] == cluster for c in kuberay.rayclusters())  # ttl not over yet
    t_end = time.time()
    deadline = time.monotonic() + 15
    while any(c["metadata"]["name"] == cluster for c in kuberay.rayclusters()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(c["metadata"]["name"] == cluster for c in kuberay.rayclusters())
    assert time.time() - t_end > 0.5  # it waited for the ttl (endTime has 1 s resolution)
    assert kuberay.rayjob("ttl") is not None and kuberay.pods("job-name=ttl")  # RayJob + submitter log kept

    keep = kuberay.wait_rayjob("keep", lambda o: kuberay.status_of(o)[0] == "Complete", timeout=60)
    assert any(c["metadata"]["name"] == keep["status"]["rayClusterName"] for c in kuberay.rayclusters())
    sus = kuberay.wait_rayjob("sus", lambda o: kuberay.status_of(o)[0] == "Complete", timeout=60)
    assert sus["status"]["jobStatus"] == "SUCCEEDED" and len(kuberay.history("sus")) == 1
    http = kuberay.wait_rayjob("http", lambda o: kuberay.status_of(o)[0] == "Complete", timeout=60)
    assert http["status"]["jobStatus"] == "SUCCEEDED" and not kuberay.pods("job-name=http")  # no submitter in HTTPMode


@pytest.mark.integration
def test_pre_running_deadline_when_the_cluster_cannot_be_scheduled(kuberay_factory):
    kube = kuberay_factory(operator_config=OperatorConfig(schedulable=lambda rj: rj["metadata"]["name"] != "stuck"))
    kube.custom_objects().create_namespaced_custom_object(G, V, NS, PL, rayjob("stuck", preRunningDeadlineSeconds=3))
    obj = kube.wait_rayjob("stuck", lambda o: kube.status_of(o)[0] == "Failed", timeout=15)
    assert obj["status"]["reason"] == "PreRunningDeadlineExceeded" and "PreRunningDeadlineSeconds: 3" in obj["status"]["message"]
    head = kube.pods("ray.io/node-type=head")[0]["status"]
    assert head["phase"] == "Pending" and head["conditions"][0]["reason"] == "Unschedulable"
    assert kube.history("stuck") == []


@pytest.mark.integration
def test_the_projects_launcher_runs_a_rayjob_end_to_end(kuberay, s3_bucket):
    """slam's own RayJob (build_rayjob) through slam's RayJobRunner: strict admission, the operator,
    Ray, the constant entrypoint reading its step spec from S3, the submitter pod's log tail, SUCCEEDED."""
    import os

    from slam.launch.entry import ENTRYPOINT, write_spec

    kuberay.add_secret("slam-s3", {"AWS_ACCESS_KEY_ID": "standin", "AWS_SECRET_ACCESS_KEY": "standin",
                                   "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]})
    name = rayjob_name("kfp-run-1", "train")
    spec_uri = write_spec(f"{s3_bucket}/launch/{name}/step.json", ["data", "--help"])
    body = build_rayjob(name, spec_uri, namespace=NS, run_id="kfp-run-1", step="train")
    lines: list[str] = []
    launcher = RayJobRunner(kuberay.custom_objects("slam-pipeline"), NS, core_api=kuberay.core_v1("slam-pipeline"),
                            poll_s=0.3, echo=lines.append)
    result = launcher.run(body, timeout_s=90, start_timeout_s=60, check_outputs=False)
    # (Running, SUCCEEDED) is a real KubeRay state in K8sJobMode (the submitter has not finished yet); the
    # launcher returns on jobStatus SUCCEEDED, so it may see either
    assert (result.job_status, result.reattached) == ("SUCCEEDED", False) and result.deployment_status in ("Running", "Complete")
    kuberay.wait_rayjob(name, lambda o: kuberay.status_of(o) == ("Complete", "SUCCEEDED"), timeout=30)
    assert any("usage: slam data" in line for line in lines), lines
    (attempt,) = kuberay.history(name)
    assert attempt.entrypoint == ENTRYPOINT
    env = attempt.runtime_env["env_vars"]
    assert env["AWS_ACCESS_KEY_ID"] == "standin" and env["SLAM_STEP_SPEC"] == spec_uri  # from the head pod's env
    again = launcher.run(body, timeout_s=30, start_timeout_s=30, check_outputs=False)
    assert again.reattached and len(kuberay.history(name)) == 1


@pytest.mark.integration
def test_two_worker_nodes_when_enabled(local_ray):
    if not local_ray.workers:
        pytest.skip("set KUBE_STANDIN_RAY_WORKERS=2 to start two Ray worker nodes")
    nodes = local_ray.nodes()
    assert len(nodes) == 1 + local_ray.workers
    client_ = local_ray.job_client()
    script = ("import ray; ray.init(); f = ray.remote(num_cpus=1)(lambda: ray.get_runtime_context().get_node_id()); "
              "print(len({ray.get(f.options(resources={f'standin_worker_{i}': 1}).remote()) for i in range(2)}))")
    jid = client_.submit_job(entrypoint=f"python -c \"{script}\"")
    deadline = time.monotonic() + 90
    while client_.get_job_status(jid).value not in ("SUCCEEDED", "FAILED", "STOPPED") and time.monotonic() < deadline:
        time.sleep(0.5)
    logs = client_.get_job_logs(jid)
    client_.delete_job(jid)
    assert logs.strip().endswith("2"), logs

