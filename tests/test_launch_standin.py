"""The KubeRay launcher against the Kubernetes API + KubeRay operator stand-in: API faults (bounded retries,
then one clear error), RBAC, ownership of the RayJob by the step pod, and shell injection (the stand-in's
submitter runs KubeRay's `bash -ce` for real).

    pytest -q tests/test_launch_standin.py       # ~1-2 min (one local Ray head for the session)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client

from slam import storage
from slam.errors import SlamError
from slam.launch import validate
from slam.launch.entry import ENTRYPOINT
from slam.launch.kubeapi import KubeApi
from slam.launch.kuberay import KubeRayLauncher, RayJobFailed, RayJobRunner
from slam.launch.rayjob import PodOwner, build_rayjob, rayjob_name
from slam.retry import RetriesExhausted, Retry

NS = "slam"


def kube_for(kube, sa: str = "slam-pipeline", timeout=(2, 1), attempts: int = 4) -> KubeApi:
    """What KubeApi.from_environment builds in a pod: the SA's token, urllib3's own retries off."""
    cfg = kube.configuration(sa)
    cfg.retries = 0
    api = client.ApiClient(cfg)
    return KubeApi(client.CustomObjectsApi(api), client.CoreV1Api(api), timeout=timeout,
                   policy=Retry(attempts=attempts, base_s=0.2, max_sleep_s=1.0))


def body(name: str = "", owner: PodOwner | None = None, spec_uri: str = "s3://bkt/runs/train/k1/step.json") -> dict:
    return build_rayjob(name or rayjob_name("k1", "train"), spec_uri, namespace=NS, run_id="k1", step="train",
                        owner=owner)


# --------------------------------------------------------------------------------------------------
# API faults


def test_api_500s_are_ridden_out_then_an_outage_is_one_clear_error(kube_api):
    kube = kube_for(kube_api)
    runner = RayJobRunner(kube, NS, echo=lambda s: None)
    kube_api.faults.fail_next(2, match=r"/rayjobs")
    obj, existed = runner.get_or_create(body())
    assert not existed and obj["metadata"]["name"] == rayjob_name("k1", "train")
    assert kube_api.faults.injected == 2

    kube_api.faults.fail_for(30, match=r"/rayjobs")
    t0 = time.monotonic()
    with pytest.raises(RetriesExhausted) as e:
        runner.get(obj["metadata"]["name"])
    msg = str(e.value)
    assert "get RayJob" in msg and "after 4 attempts" in msg and "500" in msg and "\n" not in msg, msg
    assert time.monotonic() - t0 < 10
    kube_api.faults.clear()

    # a hung API server: every request times out (1 s read timeout, no silent urllib3 retries)
    kube_api.faults.hang_next(4, seconds=5, match=r"/rayjobs")
    t0 = time.monotonic()
    with pytest.raises(RetriesExhausted, match="(?i)read timed out"):
        runner.get(obj["metadata"]["name"])
    assert 4 <= time.monotonic() - t0 < 12
    assert len(kube_api.api.requests_to("GET", r"/rayjobs/slam-train")) >= 4


def test_a_service_account_without_the_role_gets_one_clear_error(kube_api, monkeypatch):
    """What Kubeflow's default SA would get: the message names the SA and the Role to bind."""
    monkeypatch.setenv("SLAM_SERVICE_ACCOUNT", "default-editor")
    runner = RayJobRunner(kube_for(kube_api, "default"), NS, echo=lambda s: None)
    with pytest.raises(SlamError) as e:
        runner.get_or_create(body())
    msg = str(e.value)
    assert "403" in msg and "default-editor" in msg and "k8s/base/rbac.yaml" in msg and "\n" not in msg, msg
    assert kube_api.rayjobs() == []


def test_the_rayjob_is_owned_by_the_step_pods_that_wait_for_it(kube_api, monkeypatch):
    """The first step pod creates it (ownerReference with the UID read back from the API), a retried step
    in a new pod re-attaches and adds itself; the garbage collector removes it once every owner is gone."""
    kube = kube_for(kube_api)
    first, second = kube_api.add_pod("kfp-train-a"), kube_api.add_pod("kfp-train-b")
    target = KubeRayLauncher(NS, api=kube)
    monkeypatch.setenv("SLAM_POD_NAME", "kfp-train-a")
    monkeypatch.setenv("SLAM_POD_UID", "00000000-0000-0000-0000-000000000000")
    assert target._pod_owner(kube) is None  # a wrong UID would get the RayJob garbage-collected at once
    monkeypatch.setenv("SLAM_POD_UID", first["metadata"]["uid"])
    owner = target._pod_owner(kube)
    assert owner == PodOwner("kfp-train-a", first["metadata"]["uid"])
    runner = RayJobRunner(kube, NS, echo=lambda s: None)
    name = body()["metadata"]["name"]
    runner.get_or_create(body(owner=owner))
    _, existed = runner.get_or_create(body(owner=PodOwner("kfp-train-b", second["metadata"]["uid"])))
    assert existed
    refs = kube_api.rayjob(name)["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["kfp-train-a", "kfp-train-b"]
    kube_api.delete_pod("kfp-train-a")
    time.sleep(0.5)
    assert kube_api.rayjob(name) is not None  # the retry's pod still owns it
    kube_api.delete_pod("kfp-train-b")
    deadline = time.monotonic() + 5
    while kube_api.rayjob(name) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kube_api.rayjob(name) is None


def test_sigterm_while_waiting_deletes_the_rayjob(kube_api):
    """The launcher's signal handler (a cancelled KFP run sends SIGTERM to the pod)."""
    import signal

    runner = RayJobRunner(kube_for(kube_api), NS, echo=lambda s: None, poll_s=0.2)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    from slam.launch.kuberay import StepCancelled

    with pytest.raises(StepCancelled, match="SIGTERM.*deleted"):
        runner.run(body(), check_outputs=False)  # no operator: it would wait forever
    assert kube_api.rayjobs() == [] and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --------------------------------------------------------------------------------------------------
# injection: nothing user-controlled reaches a shell


@pytest.fixture()
def standin_s3(kuberay, s3_server):
    kuberay.add_secret("slam-s3", {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                   "AWS_ENDPOINT_URL": s3_server})
    return kuberay


@pytest.mark.integration
def test_the_standin_submitter_really_runs_bash_on_what_kuberay_pastes_into_it(kuberay, tmp_path):
    """The threat, shown on a hand-written RayJob: KubeRay puts runtimeEnvYAML (Go-quoted JSON, i.e. in bash
    double quotes) and the entrypoint into the submitter's `bash -ce`; `$(…)` and `;` there run commands."""
    from test_kube_standin import rayjob

    api = kuberay.custom_objects()
    env_pwned, entry_pwned = tmp_path / "pwned-env", tmp_path / "pwned-entry"
    api.create_namespaced_custom_object("ray.io", "v1", NS, "rayjobs", rayjob(
        "evil", f"python -c 'print(1)' ; touch {entry_pwned}",
        runtimeEnvYAML=f"env_vars:\n  X: \"$(touch {env_pwned})\"\n"))
    kuberay.wait_rayjob("evil", lambda o: kuberay.status_of(o)[0] in ("Complete", "Failed"), timeout=90)
    assert env_pwned.exists() and entry_pwned.exists()


@pytest.mark.integration
@pytest.mark.parametrize("payload", ["s3://{bucket}/runs;touch${{IFS}}{tmp}/x", "s3://{bucket}/runs/$(touch {tmp}/x)",
                                     "s3://{bucket}/runs/`touch {tmp}/x`", "s3://{bucket}/runs' ; touch '{tmp}/x"])
def test_a_malicious_storage_prefix_is_refused_before_anything_reaches_the_cluster(standin_s3, s3_bucket, tmp_path,
                                                                                    payload):
    from slam.config import SlamConfig

    storage_root = payload.format(bucket=s3_bucket[5:], tmp=tmp_path)
    cfg = SlamConfig().replace(storage={"root": storage_root}, model={"path": f"{s3_bucket}/models/tiny"},
                               data={"train": f"{s3_bucket}/data"}, train={"layers": [0]})
    target = KubeRayLauncher(NS, api=kube_for(standin_s3), poll_s=0.2)
    with pytest.raises(SlamError) as e:
        target.train(cfg, step="train", key="abc123def456")
    assert "storage root" in str(e.value) and "\n" not in str(e.value)
    assert standin_s3.rayjobs() == [] and not (tmp_path / "x").exists()


@pytest.mark.integration
def test_even_an_unvalidated_value_never_reaches_a_shell(standin_s3, s3_bucket, tmp_path, monkeypatch):
    """Defense in depth: with every check switched off, the payload travels as pod env and an S3 key - the
    constant entrypoint runs, refuses the spec URI, and no command from it ever executes."""
    from slam.config import SlamConfig

    monkeypatch.setattr(validate, "s3_uri", lambda value, what="": str(value))
    monkeypatch.setattr("slam.launch.kuberay._check_pod_inputs", lambda cfg, key: None)
    root = f"{s3_bucket}/runs;touch${{IFS}}{tmp_path}/x;$(touch {tmp_path}/y)"
    cfg = SlamConfig().replace(storage={"root": root}, model={"path": f"{s3_bucket}/models/tiny"},
                               data={"train": f"{s3_bucket}/data"}, train={"layers": [0]})
    target = KubeRayLauncher(NS, api=kube_for(standin_s3, timeout=(5, 30)), poll_s=0.3)
    with pytest.raises(RayJobFailed) as e:
        target.train(cfg, step="train", key="abc123def456")
    (job,) = standin_s3.rayjobs()
    assert job["spec"]["entrypoint"] == ENTRYPOINT
    (attempt,) = standin_s3.history(job["metadata"]["name"])
    assert attempt.entrypoint == ENTRYPOINT and attempt.runtime_env["env_vars"]["SLAM_STEP_SPEC"].startswith(root)
    assert "is not a plain s3://bucket/path URI" in str(e.value) or "SLAM_STEP_SPEC" in str(e.value), str(e.value)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# --------------------------------------------------------------------------------------------------
# the entrypoint and the Ray Jobs client


def test_the_entrypoint_refuses_bad_specs_with_one_line(s3_bucket, monkeypatch, capsys):
    from slam.launch import entry

    monkeypatch.delenv(entry.SPEC_ENV, raising=False)
    assert entry.main() == 2 and "SLAM_STEP_SPEC is not set" in capsys.readouterr().err
    monkeypatch.setenv(entry.SPEC_ENV, f"{s3_bucket}/x;id")
    assert entry.main() == 2 and "not a plain s3://" in capsys.readouterr().err
    for argv, needle in ((["launch", "rayjob"], "may not run as a Ray job"), (["pipeline", "run"], "may not run"),
                         ([], "non-empty list"), (["train", 3], "list of strings")):
        storage.write_json(f"{s3_bucket}/spec.json", {"version": 1, "argv": argv})
        monkeypatch.setenv(entry.SPEC_ENV, f"{s3_bucket}/spec.json")
        assert entry.main() == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    entry.write_spec(f"{s3_bucket}/ok.json", ["data", "--help"])
    monkeypatch.setenv(entry.SPEC_ENV, f"{s3_bucket}/ok.json")
    with pytest.raises(SystemExit) as ex:  # argparse's --help
        entry.main()
    assert ex.value.code == 0 and "usage: slam data" in capsys.readouterr().out


def test_job_submission_runs_the_constant_entrypoint_with_the_spec_in_the_runtime_env():
    from slam.distributed.job_submission import JobSubmissionRunner

    sent = {}

    class FakeClient:
        def get_job_info(self, sid):
            if not sent:
                raise RuntimeError("Request failed with status code 404: does not exist")
            return SimpleNamespace(status="SUCCEEDED", message="")

        def submit_job(self, **kw):
            sent.update(kw)

        def get_job_logs(self, sid):
            return "ok\n"

    runner = JobSubmissionRunner("http://ray:8265", client=FakeClient(), poll_s=0.01, echo=lambda s: None)
    res = runner.run_spec("s3://bkt/run/launch/x/step.json", "slam-train-x")
    assert res.status == "SUCCEEDED"
    assert sent["entrypoint"] == ENTRYPOINT
    assert sent["runtime_env"] == {"env_vars": {"SLAM_STEP_SPEC": "s3://bkt/run/launch/x/step.json"}}
    with pytest.raises(SlamError, match="step spec URI"):
        runner.run_spec("s3://bkt/run/$(id)/step.json", "slam-train-y")


def test_a_hung_ray_dashboard_is_a_bounded_wait(monkeypatch):
    import socket

    from slam.distributed import job_submission

    monkeypatch.setattr(job_submission, "TIMEOUT", (1, 1))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # accepts connections, never answers
    try:
        t0 = time.monotonic()
        with pytest.raises(SlamError, match="cannot reach the Ray dashboard"):
            job_submission.JobSubmissionRunner(f"http://127.0.0.1:{srv.getsockname()[1]}",
                                               retry=Retry(attempts=2, base_s=0.1))
        assert time.monotonic() - t0 < 15
    finally:
        srv.close()


def test_urls_and_names_that_reach_pods_are_checked():
    ok = ["s3://bkt/runs", "s3://my.bucket-1/a/b=c/d+e_f.json", "s3://bkt/"]
    bad = ["s3://b/x", "s3://Bkt/x", "s3://bkt/a b", "s3://bkt/a\nb", "s3://bkt//x", "s3://bkt/../x", "s3://bkt/a;b",
           "s3://bkt/$(x)", "s3://bkt/`x`", "s3://bkt/a'b", 's3://bkt/a"b', "s3://bkt/a\\b", "s3://bkt/a|b",
           "s3://bkt/a&b", "s3://bkt/${IFS}", "s3://bkt/a>b", "/tmp/x", "http://x/y", "s3://bkt/" + "a" * 1100]
    for u in ok:
        assert validate.s3_uri(u) == u
    for u in bad:
        with pytest.raises(SlamError):
            validate.s3_uri(u)
    assert validate.image("ghcr.io/slam-project/slam:0.1.0") and validate.image("localhost:5000/a/b@sha256:" + "a" * 64)
    for img in ("ghcr.io/x/slam:1;id", "UPPER/x", "x y", "$(id)"):
        with pytest.raises(SlamError):
            validate.image(img)
    assert validate.problems(ns=("namespace", "Bad NS"), uid=("uid", "nope")) != []
    assert Path(validate.__file__).name == "validate.py"


@pytest.mark.parametrize("kw", [
    {},
    {"shape": "gpu"},
    {"settings": "kueue"},
    {"owner": True},
    {"extra_env": {"NCCL_DEBUG": "INFO"}},
])
def test_every_rayjob_the_launcher_builds_passes_strict_admission(kube_api, kw):
    """Against KubeRay's published v1 CRD with unknown fields rejected (fieldValidation=Strict, dry run)."""
    from slam.launch.rayjob import ClusterShape, RayJobSettings

    args: dict = {"namespace": NS, "run_id": "k1", "step": "train", "outputs": {"delta": "s3://bkt/runs/d"}}
    if kw.get("shape"):
        args["shape"] = ClusterShape(num_workers=4, gpus_per_worker=8, cpus_per_worker="32", memory_per_worker="400Gi",
                                     node_selector={"nvidia.com/gpu.product": "H100"},
                                     tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    if kw.get("settings"):
        args["settings"] = RayJobSettings(queue="gpu-queue", s3_secret="", image="registry.example.com/slam:1.0")
    if kw.get("owner"):
        pod = kube_api.add_pod("kfp-step")
        args["owner"] = PodOwner("kfp-step", pod["metadata"]["uid"])
    if kw.get("extra_env"):
        args["extra_env"] = kw["extra_env"]
    built = build_rayjob(rayjob_name("k1", "train"), "s3://bkt/runs/train/k1/step.json", **args)
    res = kube_api.schema.admit(built)
    assert (res.errors, res.unknown) == ([], [])
    created = kube_for(kube_api).custom.create_namespaced_custom_object("ray.io", "v1", NS, "rayjobs", built,
                                                                         field_validation="Strict", dry_run="All")
    assert created["spec"]["entrypoint"] == ENTRYPOINT


def test_s3_calls_are_bounded_when_the_endpoint_is_gone(monkeypatch):
    """S3 client: 10 s connect / 60 s read timeouts, 5 retries with backoff, then one line."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    storage.reset_client()
    try:
        cfg = storage.s3_client().meta.config
        assert (cfg.connect_timeout, cfg.read_timeout, cfg.retries["total_max_attempts"]) == (10, 60, 6)
        t0 = time.monotonic()
        with pytest.raises(SlamError) as e:
            storage.read_bytes("s3://bkt/x.json")
        assert "\n" not in str(e.value) and time.monotonic() - t0 < 60
    finally:
        storage.reset_client()
