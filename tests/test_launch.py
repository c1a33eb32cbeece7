"""KubeRay RayJob builder + launcher state machine, against an in-memory fake of the Kubernetes API.

    .venv/bin/python -m pytest -q tests/test_launch.py

The fake implements only the CustomObjectsApi / CoreV1Api calls the launcher makes; statuses follow a
script of (jobDeploymentStatus, jobStatus) the way the KubeRay operator moves them.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from k8s_schema import validate_ray_object
from kubernetes.client.exceptions import ApiException

from slam.errors import SlamError
from slam.launch.kuberay import RayJobFailed, RayJobRunner, RayJobTimeout, new_lines
from slam.launch.rayjob import (
    ANN_SPEC_HASH,
    MAX_RAYJOB_NAME,
    ClusterShape,
    RayJobSettings,
    build_rayjob,
    rayjob_name,
)

RUN_ID = "3f2c9a4e-5b7d-4c1e-9a8b-0d1e2f3a4b5c"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FakeCustomObjects:
    """In-memory RayJobs; each get() of a job advances it one step along `script` (the operator)."""

    def __init__(self, script: list[tuple[str, str] | dict] | None = None, existing: dict | None = None):
        self.objects: dict[tuple[str, str], dict] = {}
        self.script = list(script or [])
        self.calls: list[str] = []
        if existing is not None:
            self.objects[(existing["metadata"]["namespace"], existing["metadata"]["name"])] = existing

    def _check(self, group, version, plural):
        assert (group, version, plural) == ("ray.io", "v1", "rayjobs")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        self._check(group, version, plural)
        assert kw.get("field_validation") == "Strict"  # a real API server would drop unknown fields silently
        self.calls.append("create")
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        obj = copy.deepcopy(body)
        obj["metadata"]["namespace"] = namespace
        obj["status"] = {}
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self._check(group, version, plural)
        self.calls.append("get")
        obj = self.objects.get((namespace, name))
        if obj is None:
            raise ApiException(status=404, reason="NotFound")
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, tuple):
                step = {"jobDeploymentStatus": step[0], "jobStatus": step[1]}
            obj["status"] = {**step, "rayClusterName": f"{name}-abcde"}
        return copy.deepcopy(obj)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body=None, **kw):
        self._check(group, version, plural)
        self.calls.append("delete")
        if self.objects.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="NotFound")


class FakeCore:
    """Pods by label; each read returns the next log tail."""

    def __init__(self, logs: list[str]):
        self.logs = list(logs)

    def list_namespaced_pod(self, namespace, label_selector, **kw):
        if label_selector.startswith("job-name="):
            pod = SimpleNamespace(metadata=SimpleNamespace(name="submitter-x", creation_timestamp="2026-01-01"))
            return SimpleNamespace(items=[pod])
        return SimpleNamespace(items=[])

    def read_namespaced_pod_log(self, name, namespace, tail_lines, **kw):
        assert name == "submitter-x"
        return self.logs.pop(0) if len(self.logs) > 1 else self.logs[0]


def _body(**kw) -> dict:
    name = rayjob_name(RUN_ID, "train")
    return build_rayjob(name, "s3://bkt/run/train/k/step.json", run_id=RUN_ID, step="train", namespace="slam", **kw)


def _launcher(api, core=None, clock=None, lines=None):
    clock = clock or FakeClock()
    out = lines if lines is not None else []
    return RayJobRunner(api, "slam", core_api=core, poll_s=5.0, echo=out.append, clock=clock, sleep=clock.sleep)


# --------------------------------------------------------------------------------------------------
# naming and building


@pytest.mark.parametrize("run_id, step", [
    (RUN_ID, "train"),
    ("RUN_With.Weird/Chars" * 5, "tune-layer-count"),
    ("x", "t"),
])
def test_rayjob_name_is_deterministic_dns1035_and_short(run_id, step):
    a, b = rayjob_name(run_id, step), rayjob_name(run_id, step)
    assert a == b
    assert len(a) <= MAX_RAYJOB_NAME
    assert a[0].isalpha() and a.replace("-", "").isalnum() and a == a.lower()


def test_rayjob_name_differs_by_step_and_run():
    names = {rayjob_name(RUN_ID, "train"), rayjob_name(RUN_ID, "tune"), rayjob_name(RUN_ID[:-1] + "d", "train")}
    assert len(names) == 3


def test_built_rayjob_has_lifecycle_and_secret_refs_and_validates():
    body = _body(shape=ClusterShape(num_workers=3, gpus_per_worker=2,
                                    node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                                    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
                 outputs={"delta": "s3://bkt/run/delta"})
    spec = body["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    assert spec["jobId"] == body["metadata"]["name"]
    assert spec["entrypoint"] == "python -m slam.launch.entry"  # constant: the step is in the spec on S3
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    wg = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert wg["replicas"] == wg["minReplicas"] == wg["maxReplicas"] == 3
    pod = wg["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert any(v["name"] == "dshm" and v["emptyDir"]["medium"] == "Memory" for v in pod["volumes"])
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[k] and env[k]["valueFrom"]["secretKeyRef"]["name"] == "slam-s3"
    assert env["SLAM_STEP_SPEC"] == {"name": "SLAM_STEP_SPEC", "value": "s3://bkt/run/train/k/step.json"}
    assert "runtimeEnvYAML" not in spec and "metadata" not in spec  # KubeRay pastes both into bash
    assert validate_ray_object(body) == []
    assert json.loads(body["metadata"]["annotations"]["slam.io/outputs"]) == {"delta": "s3://bkt/run/delta"}


def test_kueue_queue_creates_suspended_job_with_queue_label():
    body = _body(settings=RayJobSettings(queue="gpu-queue"))
    assert body["spec"]["suspend"] is True
    assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert validate_ray_object(body) == []


@pytest.mark.parametrize("kw, needle", [
    ({"spec_uri": "s3://bkt/runs;touch${IFS}/tmp/x/step.json"}, "step spec URI"),
    ({"spec_uri": "s3://bkt/$(touch /tmp/x)/step.json"}, "step spec URI"),
    ({"spec_uri": "s3://bkt/`id`/step.json"}, "step spec URI"),
    ({"spec_uri": "s3://bkt/a/../b/step.json"}, "step spec URI"),
    ({"spec_uri": "/tmp/step.json"}, "step spec URI"),
    ({"name": "Bad_Name"}, "DNS-1035"),
    ({"name": "a" * 48}, "at most 47"),
    ({"extra_env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "from a Secret"),
    ({"extra_env": {"X": "$(AWS_SECRET_ACCESS_KEY)"}}, "'$('"),
    ({"extra_env": {"BAD NAME": "x"}}, "C identifier"),
    ({"outputs": {"delta": "/tmp/delta"}}, "output delta"),
    ({"outputs": {"delta": "s3://bkt/d;rm -rf /"}}, "output delta"),
    ({"shape": ClusterShape(num_workers=0)}, "num_workers"),
    ({"shape": ClusterShape(memory_per_worker="-16Gi")}, "memory_per_worker"),
    ({"shape": ClusterShape(cpus_per_worker="four cores")}, "cpus_per_worker"),
    ({"shape": ClusterShape(node_selector={"": "gpu"})}, "node selector"),
    ({"settings": RayJobSettings(image="ghcr.io/x/slam:1;id")}, "image"),
    ({"settings": RayJobSettings(service_account="Bad SA")}, "service account"),
    ({"namespace": "Bad NS"}, "namespace"),
])
def test_build_rejects_bad_input_with_one_clear_message(kw, needle):
    args = {"name": rayjob_name(RUN_ID, "train"), "spec_uri": "s3://bkt/run/step.json", **kw}
    with pytest.raises(SlamError) as e:
        build_rayjob(args.pop("name"), args.pop("spec_uri"), **args)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SlamError) as e:
        build_rayjob("Bad_Name", "s3://bkt/$(x)", namespace="Bad NS", shape=ClusterShape(num_workers=0))
    assert all(n in str(e.value) for n in ("DNS-1035", "step spec URI", "namespace", "num_workers"))


@pytest.mark.parametrize("mutate, needle", [
    (lambda b: b["spec"].__setitem__("shutdownAfterJobFinish", True), "shutdownAfterJobFinish"),
    (lambda b: b["spec"].__setitem__("backoffLimit", -1), "backoffLimit"),
    (lambda b: b["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].__setitem__("minReplicas", 9), "minReplicas"),
    (lambda b: b["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0), "num-cpus"),
    (lambda b: b["spec"].__setitem__("shutdownAfterJobFinishes", False), "shutdownAfterJobFinishes"),
    (lambda b: b["metadata"].__setitem__("name", "x" * 50), "47"),
])
def test_schema_catches_mistakes(mutate, needle):
    body = _body()
    mutate(body)
    problems = validate_ray_object(body)
    assert problems and any(needle in p for p in problems), problems


def test_new_lines_only_prints_unseen_log_lines():
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["a", "b"], ["a", "b"]) == []
    assert new_lines(["x"], ["y", "z"]) == ["y", "z"]


# --------------------------------------------------------------------------------------------------
# state machine


def test_create_then_success_returns_outputs_and_streams_log(s3_bucket):
    from slam import storage

    storage.write_text(f"{s3_bucket}/run/delta/_SUCCESS", "{}")
    api = FakeCustomObjects(script=[("Initializing", ""), ("Running", "PENDING"), ("Running", "RUNNING"),
                                    ("Complete", "SUCCEEDED")])
    core = FakeCore(["step 1 loss 2.0", "step 1 loss 2.0\nstep 2 loss 1.5", "step 2 loss 1.5\ndone"])
    lines: list[str] = []
    res = _launcher(api, core, lines=lines).run(_body(outputs={"delta": f"{s3_bucket}/run/delta"}))
    assert res.job_status == "SUCCEEDED" and not res.reattached
    assert res.outputs == {"delta": f"{s3_bucket}/run/delta"}
    assert api.calls.count("create") == 1
    logged = [ln for ln in lines if ln.startswith("[slam-train")]
    assert [ln.split("] ", 1)[1] for ln in logged] == ["step 1 loss 2.0", "step 2 loss 1.5", "done"]
    assert any("Running/RUNNING" in ln for ln in lines)


def test_retry_reattaches_instead_of_creating_a_second_job():
    api = FakeCustomObjects(script=[("Running", "RUNNING"), ("Running", "RUNNING"), ("Complete", "SUCCEEDED")])
    first = _launcher(api)
    body = _body()
    first.get_or_create(body)  # the first KFP attempt created it, then its pod died
    res = _launcher(api).run(copy.deepcopy(body), check_outputs=False)
    assert res.reattached and res.job_status == "SUCCEEDED"
    assert api.calls.count("create") == 1 and len(api.objects) == 1


def test_reattach_to_already_finished_job_is_immediate_success():
    body = _body()
    done = {**copy.deepcopy(body), "status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}
    done["metadata"]["namespace"] = "slam"
    api = FakeCustomObjects(existing=done)
    res = _launcher(api).run(body, check_outputs=False)
    assert res.reattached and res.job_status == "SUCCEEDED" and "create" not in api.calls


def test_same_name_with_a_different_spec_is_refused():
    body = _body()
    other = copy.deepcopy(body)
    other["metadata"]["namespace"] = "slam"
    other["metadata"]["annotations"][ANN_SPEC_HASH] = "0000000000000000"
    api = FakeCustomObjects(existing=other)
    with pytest.raises(SlamError, match="different spec"):
        _launcher(api).run(body)
    assert "create" not in api.calls


def test_create_race_409_reattaches():
    body = _body()
    api = FakeCustomObjects(script=[("Complete", "SUCCEEDED")] * 3)
    real_get = api.get_namespaced_custom_object
    first = {"done": False}

    def get_404_once(*a, **kw):  # both retries saw 404, the other one created first
        if not first["done"]:
            first["done"] = True
            api.create_namespaced_custom_object("ray.io", "v1", "slam", "rayjobs", copy.deepcopy(body),
                                                field_validation="Strict")
            raise ApiException(status=404)
        return real_get(*a, **kw)

    api.get_namespaced_custom_object = get_404_once
    res = _launcher(api).run(body, check_outputs=False)
    assert res.reattached and len(api.objects) == 1


@pytest.mark.parametrize("script, needle", [
    ([("Running", "RUNNING"), {"jobDeploymentStatus": "Complete", "jobStatus": "FAILED",
                               "message": "Job entrypoint command failed with exit code 1"}], "exit code 1"),
    ([("Initializing", ""), {"jobDeploymentStatus": "Failed", "reason": "PreRunningDeadlineExceeded",
                             "message": "cluster not ready in 3600s"}], "PreRunningDeadlineExceeded"),
    ([{"jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed",
       "message": "workerGroupSpec should have at least one container"}], "at least one container"),
])
def test_failure_surfaces_kuberay_message_and_last_log_line(script, needle):
    api = FakeCustomObjects(script=script)
    core = FakeCore(["Traceback ...\nValueError: train.layers out of range"])
    with pytest.raises(RayJobFailed) as e:
        _launcher(api, core).run(_body())
    msg = str(e.value)
    assert needle in msg and "ValueError: train.layers out of range" in msg and "\n" not in msg


def test_timeout_while_running_deletes_the_job():
    """KubeRay only marks a RayJob past activeDeadlineSeconds Failed and leaves its Ray job running until the
    cluster's TTL: the launcher's own deadline deletes it (which stops the Ray job)."""
    api = FakeCustomObjects(script=[("Running", "RUNNING")] * 100)
    with pytest.raises(RayJobTimeout, match="deleted it"):
        _launcher(api).run(_body(), timeout_s=60, start_timeout_s=30)
    assert api.calls.count("delete") == 1 and api.objects == {}


def test_kuberay_deadline_exceeded_deletes_the_job():
    api = FakeCustomObjects(script=[("Running", "RUNNING"), {"jobDeploymentStatus": "Failed", "jobStatus": "RUNNING",
                                                             "reason": "DeadlineExceeded", "message": "passed"}])
    with pytest.raises(RayJobFailed, match="DeadlineExceeded"):
        _launcher(api).run(_body())
    assert api.calls.count("delete") == 1 and api.objects == {}


def test_transient_api_errors_are_retried_then_one_clear_error():
    from slam.retry import Retry

    api = FakeCustomObjects(script=[("Running", "RUNNING"), ("Complete", "SUCCEEDED")])
    real_get, fails = api.get_namespaced_custom_object, {"n": 0}

    def flaky(*a, **kw):
        assert kw["_request_timeout"] == (10, 30)  # an int pair: kubernetes 30.1 ignores a float
        fails["n"] += 1
        if fails["n"] in (2, 3):
            raise ApiException(status=503)
        return real_get(*a, **kw)

    api.get_namespaced_custom_object = flaky
    clock = FakeClock()
    res = RayJobRunner(api, "slam", poll_s=5.0, echo=lambda s: None, clock=clock, sleep=clock.sleep,
                       retry=Retry(attempts=3)).run(_body(), check_outputs=False)
    assert res.job_status == "SUCCEEDED" and fails["n"] >= 4

    def down(*a, **kw):
        raise ApiException(status=500, reason="Internal Server Error")

    api.get_namespaced_custom_object = down
    with pytest.raises(SlamError) as e:
        RayJobRunner(api, "slam", poll_s=5.0, echo=lambda s: None, clock=clock, sleep=clock.sleep,
                     retry=Retry(attempts=4)).run(_body(), check_outputs=False)
    assert "get RayJob" in str(e.value) and "after 4 attempts" in str(e.value) and "\n" not in str(e.value)

    def forbidden(*a, **kw):
        raise ApiException(status=403, reason="Forbidden")

    api.get_namespaced_custom_object = forbidden
    with pytest.raises(SlamError, match="k8s/base/rbac.yaml"):
        _launcher(api).run(_body(), check_outputs=False)


def test_start_timeout_when_never_scheduled():
    api = FakeCustomObjects(script=[("Initializing", "")] * 100)
    clock = FakeClock()
    with pytest.raises(RayJobTimeout, match="did not start within 30s"):
        _launcher(api, clock=clock).run(_body(), timeout_s=3600, start_timeout_s=30)
    assert clock.t < 60 and api.objects == {}  # deleted: nothing holds quota for a job that never ran


def test_suspended_then_admitted_runs_to_success():
    api = FakeCustomObjects(script=[("Suspended", ""), ("Suspended", ""), ("Initializing", ""),
                                    ("Running", "RUNNING"), ("Complete", "SUCCEEDED")])
    lines: list[str] = []
    res = _launcher(api, lines=lines).run(_body(settings=RayJobSettings(queue="q")), check_outputs=False)
    assert res.job_status == "SUCCEEDED"
    states = [ln.split(": ", 1)[1] for ln in lines if ln.startswith("RayJob ") and "/" in ln]
    assert states[:3] == ["Suspended/-", "Initializing/-", "Running/RUNNING"]


def test_suspended_past_start_timeout_hints_at_kueue():
    api = FakeCustomObjects(script=[("Suspended", "")] * 100)
    with pytest.raises(RayJobTimeout, match="Kueue"):
        _launcher(api).run(_body(settings=RayJobSettings(queue="q")), start_timeout_s=20)


def test_failed_job_is_recreated_on_retry():
    body = _body()
    failed = copy.deepcopy(body)
    failed["metadata"]["namespace"] = "slam"
    failed["status"] = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}
    api = FakeCustomObjects(existing=failed)
    real_create = api.create_namespaced_custom_object

    def create(*a, **k):  # the operator then runs the new attempt
        out = real_create(*a, **k)
        api.script = [("Running", "RUNNING"), ("Complete", "SUCCEEDED")]
        return out

    api.create_namespaced_custom_object = create
    res = _launcher(api).run(body, check_outputs=False)
    assert res.job_status == "SUCCEEDED" and not res.reattached
    assert api.calls.count("delete") == 1 and len(api.objects) == 1


def test_success_with_missing_outputs_is_a_failure(s3_bucket):
    api = FakeCustomObjects(script=[("Complete", "SUCCEEDED")])
    with pytest.raises(RayJobFailed, match="outputs are missing"):
        _launcher(api).run(_body(outputs={"delta": f"{s3_bucket}/nothing/here"}))


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_prints_a_valid_rayjob():
    import yaml

    out = subprocess.run([sys.executable, "-m", "slam", "launch", "rayjob", "--print", "--run-id", RUN_ID,
                          "--step", "train", "--workers", "2", "--gpus-per-worker", "1", "--storage", "s3://bkt/run",
                          "--toleration", "nvidia.com/gpu:NoSchedule", "--node-selector", "pool=gpu",
                          "--output", "delta=s3://bkt/run/delta", "--", "slam", "train", "--config", "s3://bkt/c.yaml"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body = yaml.safe_load(out.stdout)
    assert validate_ray_object(body) == []
    wg = body["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert wg["template"]["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                      "effect": "NoSchedule"}]
    assert body["metadata"]["name"] == rayjob_name(RUN_ID, "train")
    env = {e["name"]: e.get("value") for e in body["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["SLAM_STEP_SPEC"] == f"s3://bkt/run/launch/{body['metadata']['name']}/step.json"


def test_cli_bad_command_is_exit_2_one_line():
    out = subprocess.run([sys.executable, "-m", "slam", "launch", "rayjob", "--print", "--run-id", "r",
                          "--step", "train", "--storage", "s3://bkt/run", "--", "python", "x.py"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "slam <step>" in out.stderr
    out = subprocess.run([sys.executable, "-m", "slam", "launch", "rayjob", "--print", "--run-id", "r", "--step",
                          "train", "--storage", "s3://bkt/run;id", "--", "slam", "train"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--storage" in out.stderr
