"""The cluster path, run for real: the compiled pipeline with `--launcher kuberay`, every step a pod of the
project's image, tune and train as RayJobs through the Kubernetes API + KubeRay operator stand-in, on a
Ray cluster of a head and two worker nodes running that image; S3 and MLflow servers on 127.0.0.1.

    pytest -q tests/test_cluster_path.py          # ~7 min on 2 quiet cores (the whole DAG ~290 s)

What runs where (tests/kubestandin/kfp.py, image.py, sandbox.py):
- "the image": `pip wheel .` installed into a scratch venv (no editable install, no repo on the path);
- each pipeline task: a fresh process of the image in a private mount namespace where the repo,
  ../shared and /work are empty, with an empty HOME and working dir, the env the compiled
  PipelineSpec + PlatformSpec give it (Secrets from the API stand-in, SLAM_IMAGE, the pod's
  name/uid/namespace/service account), its service account's token, and only S3, MLflow and the API
  server reachable;
- the Ray cluster: head (0 CPUs, drivers only, as KubeRay's rayStartParams say) + 2 one-CPU worker nodes,
  token auth, started from the image inside the same sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from kubestandin import KubeStandin, LocalRayCluster
from kubestandin.image import build_image
from kubestandin.kfp import KfpPods, run_in_thread
from kubestandin.sandbox import Sandbox

from slam import storage
from slam.launch.entry import ENTRYPOINT

pytestmark = pytest.mark.integration
NS = "slam"
IMAGE_NAME = "registry.example.com/slam:cluster-path"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


# --------------------------------------------------------------------------------------------------
# the cluster


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build_image(tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    box = Sandbox.create(tmp_path_factory.mktemp("sandbox"))
    if os.geteuid() == 0:
        assert box.mode == "mount-ns", "as root the pods' mount namespace must work"
    return box


@pytest.fixture(scope="module")
def cluster_ray(image, sandbox, tmp_path_factory):
    home = tmp_path_factory.mktemp("ray-home")
    ray = LocalRayCluster(workers=2, head_cpus=0, worker_cpus=1, python=image.python, base_env=image.env(home),
                          wrap=sandbox.wrap, boot_nice=-15 if os.geteuid() == 0 else None)
    ray.start(timeout=600)  # ~1 min a node on a busy 2-core box
    try:
        yield ray
    finally:
        ray.stop()


@pytest.fixture(scope="module")
def bucket(s3_server):
    import uuid

    name = f"cluster-{uuid.uuid4().hex[:8]}"
    storage.s3_client().create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="module")
def cluster(cluster_ray, s3_server, mlflow_server):
    kube = KubeStandin(namespace=NS, ray=cluster_ray).start()
    kube.add_secret("slam-s3", {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                "AWS_ENDPOINT_URL": s3_server})
    kube.add_configmap("slam-endpoints", {"AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_S3_ENDPOINT_URL": s3_server})
    try:
        yield kube
    finally:
        kube.stop()
    assert not kube.operator.errors, kube.operator.errors


@pytest.fixture(scope="module")
def pods(cluster, image, sandbox, s3_server, mlflow_server, tmp_path_factory):
    network = [u.split("//", 1)[1] for u in (s3_server, mlflow_server.uri)]
    return KfpPods(cluster, image, sandbox, network=network, root=tmp_path_factory.mktemp("kfp"))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """Compiled as a user would: SLAM_IMAGE at compile time; finished clusters kept 2 s (not 120)."""
    out = tmp_path_factory.mktemp("pkg") / "pipeline.yaml"
    subprocess.run([sys.executable, "-m", "slam", "pipeline", "compile", "--out", str(out), "--rayjob-ttl", "2"],
                   check=True, timeout=180, env={**os.environ, "SLAM_IMAGE": IMAGE_NAME}, capture_output=True)
    return out


@pytest.fixture(scope="module")
def tiny_on_s3(bucket, tmp_path_factory):
    from slam.testing import save_tiny

    local = save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama", num_layers=4)
    return storage.publish_dir(local, f"{bucket}/models/tiny-llama")


def params(bucket: str, model: str, mlflow: str, **over) -> dict:
    p = {"base_model": model, "languages": "en,de", "synth_problems": 16, "probe_questions": 4,
         "probe_top_k": 2, "k_grid": "1,2", "launcher": "kuberay", "storage": f"{bucket}/runs",
         "mlflow_uri": mlflow, "experiment": "cluster-path", "registry_name": "slam-cluster-path",
         "eval_limit": 2, "eval_max_new_tokens": 8,
         # list parameters (what `slam pipeline submit section.key=value` compiles to)
         "tune_overrides": ["tune.max_steps=2", "tune.asha=false", "tune.metric=val_loss", "train.engine=torch",
                            "train.num_workers=1", "train.micro_batch_size=2", "train.report_every=1", "train.val_max_examples=4",
                            "data.max_length=512"],
         "train_overrides": ["train.engine=torch", "train.num_workers=2", "train.max_steps=16",
                             "train.checkpoint_every=2", "train.micro_batch_size=2", "train.report_every=2",
                             "train.val_max_examples=4", "data.max_length=512", "train.max_failures=0"]}
    p.update(over)
    return p


# --------------------------------------------------------------------------------------------------
# helpers


def wait_for(pred, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def rayjob_of(kube: KubeStandin, component: str) -> dict | None:
    found = [j for j in kube.rayjobs() if j["metadata"]["labels"].get("app.kubernetes.io/component") == component
             and not j["metadata"].get("deletionTimestamp")]
    return found[-1] if found else None


def checkpoints(root: str, training_only: bool = False) -> list[str]:
    """trainer_state.json keys of the checkpoints under `root`; training_only: Ray Train's run dirs
    (<root>/slam-<method>-<hash>/), not the Tune trials' (<root>/<tune run>-trials/)."""
    bucket, prefix = storage.split_s3(root)
    prefix += "/slam-" if training_only else "/"
    keys = []
    for page in storage.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if "/checkpoint_" in o["Key"]
                 and o["Key"].endswith("trainer_state.json")]
    return keys


def train_worker_nodes(ray: LocalRayCluster) -> dict[str, set[str]]:
    """job id -> node ids of its RayTrainWorker actors (Ray's state API keeps dead actors)."""
    url = (ray.dashboard_url + "/api/v0/actors?detail=1&limit=10000&filter_keys=class_name"
           "&filter_predicates=%3D&filter_values=RayTrainWorker")
    with urllib.request.urlopen(urllib.request.Request(url, headers=ray.auth_headers()), timeout=30) as r:
        actors = json.loads(r.read())["data"]["result"]["result"]
    out: dict[str, set[str]] = {}
    for a in actors:
        out.setdefault(a["job_id"], set()).add(a["node_id"])
    return out


def logs(run) -> str:
    return "\n".join(f"--- {t.name} ({t.status})\n{t.log_text()[-3000:]}" for t in run.tasks.values())


# --------------------------------------------------------------------------------------------------
# the whole DAG


def test_the_whole_dag_runs_as_pods_with_the_kuberay_launcher(cluster, cluster_ray, pods, package, bucket,
                                                              tiny_on_s3, mlflow_server):
    """prepare -> probe -> tune (RayJob) -> train (RayJob, 2 workers on 2 nodes) -> eval x2 -> register, with two
    faults on the way: the API server answers 500 for 4 s while the tune step waits (bounded retries ride
    it out), and the training Ray job is stopped after its first checkpoint (the step fails, KFP retries it
    in a new pod, which re-attaches by name, re-creates the failed RayJob and resumes from the checkpoint)."""
    t0 = time.monotonic()
    thread, run, box = run_in_thread(pods, package, params(bucket, tiny_on_s3, mlflow_server.uri),
                                     service_account="slam-pipeline")

    wait_for(lambda: rayjob_of(cluster, "tune"), 600, "the tune RayJob")
    injected0 = cluster.faults.injected
    cluster.faults.fail_for(4.0, match=r"/rayjobs")
    train = wait_for(lambda: rayjob_of(cluster, "train"), 900, "the train RayJob")
    assert cluster.faults.injected > injected0  # the tune step's launcher met the 500s and carried on
    # only the training run's checkpoints (runs/slam-<method>-<hash>/): the Tune trials checkpoint too
    first_ckpt = wait_for(lambda: checkpoints(f"{bucket}/runs", training_only=True), 600, "a training checkpoint on S3",
                          every=0.5)
    job_id = wait_for(lambda: (cluster.rayjob(train["metadata"]["name"]) or {}).get("status", {}).get("jobId"), 60,
                      "the train Ray job id")
    assert cluster_ray.job_client().get_job_status(job_id).value == "RUNNING"
    cluster_ray.job_client().stop_job(job_id)  # "the Ray job is killed mid-train"

    thread.join(1500)
    assert not thread.is_alive() and "error" not in box, box
    wall = time.monotonic() - t0
    print(f"\nwhole DAG through the stand-in: {wall:.0f} s; per task: " +
          ", ".join(f"{t.name} {sum(a.seconds for a in t.attempts):.0f}s x{len(t.attempts)}" for t in run.tasks.values()))
    assert run.status == "Succeeded", logs(run)
    assert run.tasks["register-model"].outputs["version"] == "1"  # registered model version
    assert run.tasks["condition-1"].status == "Succeeded"  # the data step found languages: the DAG went on

    # every step was a pod of the run's service account; tune rode out the 500s in one attempt
    assert all(a.rc == 0 for t in run.tasks.values() for a in t.attempts[-1:])
    assert len(run.tasks["tune-layer-count"].attempts) == 1
    train_task = run.tasks["train-slam"]
    assert len(train_task.attempts) == 2, logs(run)  # the KFP retry
    assert "RayJobFailed" in train_task.attempts[0].log.read_text() and "STOPPED" in train_task.attempts[0].log.read_text()
    assert "re-attaching" in train_task.attempts[1].log.read_text() or "previous attempt failed" in \
        train_task.attempts[1].log.read_text()
    for t in run.tasks.values():
        for a in t.attempts:
            pod = next(p for p in cluster.pods() if p["metadata"]["name"] == a.pod)
            assert pod["spec"]["serviceAccountName"] == "slam-pipeline"

    # the RayJobs: strict CRD admission, constant entrypoint, the step's image, owned by their step pods
    jobs = {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in cluster.rayjobs()}
    assert set(jobs) == {"tune", "train"}
    owners = {"tune": run.tasks["tune-layer-count"].attempts[0].uid, "train": train_task.attempts[1].uid}
    for step, job in jobs.items():
        sent = {k: job[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {
            k: v for k, v in job["metadata"].items() if k in ("name", "labels", "annotations", "ownerReferences")}}
        res = cluster.schema.admit(sent)
        assert (res.errors, res.unknown) == ([], []), step
        assert job["spec"]["entrypoint"] == ENTRYPOINT
        for group in [job["spec"]["rayClusterSpec"]["headGroupSpec"], *job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]:
            (c,) = group["template"]["spec"]["containers"]
            assert c["image"] == IMAGE_NAME  # SLAM_IMAGE reached the RayJob
        assert [r["uid"] for r in job["metadata"]["ownerReferences"]] == [owners[step]], step
    assert cluster.api.requests_to("POST", r"/rayjobs$") and all(
        r.query.get("fieldValidation") == ["Strict"] for r in cluster.api.requests_to("POST", r"/rayjobs$"))

    # the train RayJob ran twice under one name; the second Ray job resumed from a checkpoint
    attempts = cluster.history(jobs["train"]["metadata"]["name"])
    assert len(attempts) == 2 and attempts[0].stopped_by == "" and attempts[0].status == "STOPPED"
    final = sorted(checkpoints(f"{bucket}/runs", training_only=True))[-1]
    state = json.loads(storage.read_text(f"s3://{storage.split_s3(bucket)[0]}/{final}"))
    assert state["attempts"] == 2 and final != first_ckpt[0]  # the second Ray job resumed the first's checkpoint
    assert [h["step"] for h in state["history"]] == list(range(1, 17))  # every step exactly once

    # 2 training workers on 2 Ray nodes (the head has no CPUs)
    nodes = train_worker_nodes(cluster_ray)
    assert any(len(n) == 2 for n in nodes.values()), nodes

    # the outputs landed on S3 and the next steps read them
    delta = run.tasks["train-slam"].outputs["delta"].metadata["uri"]
    assert delta.startswith(f"{bucket}/runs/") and storage.exists(storage.join(delta, "_SUCCESS"))
    slam_eval = run.tasks["evaluate-2"].outputs["report"].metadata["uri"]
    assert storage.read_json(slam_eval)["meta"]["delta"] == delta
    for step in ("tune", "train"):
        spec = storage.read_json(storage.join(f"{bucket}/runs", step, jobs[step]["metadata"]["annotations"]
                                              ["slam.io/run-id"], "step.json"))
        assert spec["argv"][0] == step and spec["argv"][2].endswith("/config.yaml")

    # nothing left behind: no clusters, no running Ray jobs, no running pods
    wait_for(lambda: not cluster.rayclusters(), 60, "the RayClusters to be deleted")
    assert all(j.status.value in TERMINAL for j in cluster_ray.job_client().list_jobs())
    assert not [p["metadata"]["name"] for p in cluster.pods() if p["status"]["phase"] in ("Pending", "Running")]


def test_a_cancelled_step_deletes_its_rayjob(cluster, cluster_ray, pods, package, bucket, tiny_on_s3, mlflow_server):
    """KFP's Terminate sends SIGTERM to the step's pod: the launcher deletes its RayJob before it exits
    (the pod object is left in place here, so it is the signal handler, not the garbage collector)."""
    p = params(bucket, tiny_on_s3, mlflow_server.uri)
    p["train_overrides"] = [o.replace("train.max_steps=16", "train.max_steps=400") for o in p["train_overrides"]]
    thread, run, box = run_in_thread(pods, package, p, service_account="slam-pipeline")
    name = wait_for(lambda: next((j["metadata"]["name"] for j in cluster.rayjobs()
                                  if j["metadata"]["labels"].get("app.kubernetes.io/component") == "train"
                                  and cluster.status_of(j) == ("Running", "RUNNING")), None),
                    900, "a running train RayJob")
    pod = run.tasks["train-slam"].attempts[-1].pod
    t_cancel = time.monotonic()
    pods.cancel(run, "train-slam")
    thread.join(300)
    assert not thread.is_alive() and "error" not in box, box
    assert run.tasks["train-slam"].status == "Cancelled" and run.status == "Cancelled"
    attempt = run.tasks["train-slam"].attempts[-1]
    log = attempt.log.read_text()
    # the step ended on its own inside the pod's grace period, having deleted its RayJob and said so
    assert "StepCancelled" in log and "deleting it" in log, (attempt.rc, time.monotonic() - t_cancel, log[-3000:])
    assert cluster.rayjob(name) is None
    assert any(q["metadata"]["name"] == pod for q in cluster.pods())  # the pod object is still there
    (attempt,) = cluster.history(name)
    assert attempt.status == "STOPPED" and attempt.stopped_by in ("rayjob-deleted", "cluster-deleted")
    wait_for(lambda: not cluster.rayclusters(), 60, "the RayClusters to be deleted")
    assert all(j.status.value in TERMINAL for j in cluster_ray.job_client().list_jobs())
