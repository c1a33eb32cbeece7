"""A KubeRay operator stand-in: the RayJob controller's state machine, run against a real local Ray.

Mirrored from KubeRay `v1.7.0-rc.0-5-gfeeaf72fa` (commit feeaf72f, the CRD in tests/data/kuberay/):
`ray-operator/controllers/ray/rayjob_controller.go`, `utils/validation.go`, `apis/ray/v1/rayjob_types.go`,
`common/job.go` (read, not copied). Per RayJob, on every resync (0.2 s here; KubeRay requeues every 3 s
and on watch events):

- New: add finalizer `ray.io/rayjob-finalizer`; status.jobId = spec.jobId or `<name>-<5 random>`,
  rayClusterName = `<name>-<5 random>`, startTime = now -> Initializing. (Not: clusterSelector mode.)
- Validation first, on every reconcile (ValidateRayJobMetadata/Spec/Status): name <= 47 chars and a
  DNS-1035 label, suspend needs shutdownAfterJobFinishes, ttl >= 0 and only with shutdown, positive
  activeDeadlineSeconds / preRunningDeadlineSeconds, backoffLimit >= 0, runtimeEnvYAML is a YAML map,
  deletionStrategy combinations, head/worker containers present, replicas bounds -> ValidationFailed
  with reason ValidationFailed and KubeRay's message (the object stays; KubeRay never deletes it).
- Initializing: suspend -> Suspending; activeDeadlineSeconds -> Failed/DeadlineExceeded;
  preRunningDeadlineSeconds -> Failed/PreRunningDeadlineExceeded; create the RayCluster (+ head/worker
  Pods) and wait until it is ready; dashboardURL = the real local dashboard (127.0.0.1:port);
  K8sJobMode: create the submitter batch/v1 Job + Pod (labels job-name=<name> etc.) which submits;
  InteractiveMode -> Waiting; -> Running.
- Running: the same deadline checks, the 300 s transition grace period, the job-status-check timeout;
  K8sJobMode: submitter failure (its Job reached backoffLimit 2 / submitterConfig.backoffLimit) ->
  Failed/SubmissionFailed (AppFailed when the Ray job had FAILED); a submitter finished 30 s ago
  without a terminal Ray job -> Failed; GetJobInfo through the Job Submission API -> jobStatus,
  message, rayJobInfo.startTime/endTime; terminal (and, with a submitter, the submitter finished) ->
  Complete, or Failed/AppFailed for FAILED. HTTPMode submits from here when the job is not found.
- after each pass: failed/succeeded counters and backoffLimit: a Failed attempt with retries left
  (not DeadlineExceeded/JobStatusCheckTimeoutExceeded) becomes Retrying -> cluster + submitter
  deleted -> New (a new cluster name, startTime reset, so activeDeadlineSeconds counts per attempt).
- Suspending/Retrying -> delete cluster and submitter Job, wait until gone, reset -> Suspended / New.
  Suspended + spec.suspend false -> New.
- Complete/Failed: deletionStrategy (deletionRules with ttlSeconds, or legacy onSuccess/onFailure;
  feature gate RayJobDeletionPolicy, on by default in this KubeRay), else shutdownAfterJobFinishes:
  once endTime + ttlSecondsAfterFinished passed, delete the RayCluster (the submitter Job stays so its
  log stays readable) - or the RayJob itself with `delete_rayjob_after_job_finishes`
  (DELETE_RAYJOB_CR_AFTER_JOB_FINISHES). NOTE: KubeRay never calls StopJob for a deadline: the Ray job
  keeps running until the cluster is deleted (i.e. ttlSecondsAfterFinished later, or never without
  shutdownAfterJobFinishes) - mirrored as is.
- Deletion of a RayJob: StopJob unless the job status is terminal, then remove the finalizer; the
  garbage collector deletes the RayCluster and submitter Job it owns.
- Status is written only when jobStatus, jobDeploymentStatus, rayClusterStatus or
  jobStatusCheckFailureStartTime change (updateRayJobStatus), endTime set when terminal.

The cluster: every RayJob's "RayCluster" is a store object backed by the ONE shared local Ray cluster
(`LocalRayCluster`). Deleting a RayCluster (retry, suspend, shutdown, GC) stops its Ray job and deletes
the job's record from Ray, so the next cluster starts clean (the same submission id can be reused,
as on a fresh cluster), holding the stand-in finalizer `standin.ray.io/ray-cleanup` until that is
done; the submitter Pod keeps a snapshot of the log. The head container's env (value, secretKeyRef,
configMapKeyRef, envFrom) is resolved from Secrets/ConfigMaps in the store and passed to the Ray
job as runtime_env env_vars (a missing non-optional Secret keeps the head Pod in
CreateContainerConfigError and the cluster never ready, as on a cluster). K8sJobMode runs the
submitter's `bash -ce` on what KubeRay pastes into it (BuildJobSubmitCommand): `--runtime-env-json`
and `--metadata-json` as Go-quoted JSON (bash double quotes: `$(…)`, backticks, `${…}` expand),
`--submission-id <jobId>` and `-- <spec.entrypoint>` as they are; Ray gets the JSON the shell produced
and `shlex.join(words)` of the entrypoint, as `ray job submit` does; HTTPMode passes both as they are. That bash runs HERE, in a scratch dir with a minimal env, exactly as the submitter pod
would run it: an entrypoint with `;`/`$(...)` outside quotes really executes (that is the point: tests
can show an injection); `OperatorConfig(submitter_shell=False)` skips the shell.

Not mirrored: scheduling (no nodes, quotas, GPUs, tolerations: pods are "running" at once unless
`schedulable` says no), images and image pulls, per-cluster Ray processes (rayStartParams,
resources, head/worker counts are not applied: all jobs share the local Ray), autoscaling, GCS fault
tolerance, Kueue/batch schedulers, services/ingress, RayCluster conditions, events, metrics,
clusterSelector mode, SidecarMode's sidecar (treated like HTTPMode), Ray token auth inside the
RayCluster (authOptions), webhooks, leader election.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shlex
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .apiserver import KubeApiServer, make_pod, now_ts, rand_suffix, ts_to_epoch
from .schema import dns1035_label_errors

RAYJOBS, RAYCLUSTERS, JOBS, PODS = ("ray.io", "rayjobs"), ("ray.io", "rayclusters"), ("batch", "jobs"), ("", "pods")
FINALIZER = "ray.io/rayjob-finalizer"
CLEANUP_FINALIZER = "standin.ray.io/ray-cleanup"
ANN_SUBMISSION = "standin.ray.io/submission-id"
MAX_RAYJOB_NAME = 47
TERMINAL_JOB = {"STOPPED", "SUCCEEDED", "FAILED"}
TERMINAL_DEPLOYMENT = {"Complete", "Failed"}


@dataclass
class OperatorConfig:
    resync_s: float = 0.2
    cluster_ready_after_s: float = 0.3
    """A new RayCluster turns `ready` this long after it is created (real clusters: pod scheduling + image pull)."""
    schedulable: bool | Callable[[dict[str, Any]], bool] = True
    """False (or a predicate on the RayJob) keeps the cluster's Pods Pending/Unschedulable."""
    delete_rayjob_after_job_finishes: bool = False
    """KubeRay's DELETE_RAYJOB_CR_AFTER_JOB_FINISHES: shutdown deletes the RayJob, not just the cluster."""
    feature_gates: dict[str, bool] = field(default_factory=lambda: {"RayJobDeletionPolicy": True})
    submitter_shell: bool = True
    """K8sJobMode: evaluate spec.entrypoint through bash as the submitter Pod's `bash -ce` does."""
    transition_grace_period_s: float = 300.0  # RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS
    status_check_timeout_s: float = 300.0  # RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS
    submitter_finished_timeout_s: float = 30.0  # DefaultSubmitterFinishedTimeout
    stop_wait_s: float = 15.0
    """Cluster teardown: how long to wait for a stopped Ray job to reach a terminal state."""


@dataclass
class Attempt:
    """One Ray job submission made for a RayJob (what `history` holds)."""
    rayjob: str
    cluster: str
    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    submitted_at: float
    status: str = ""
    message: str = ""
    stopped_by: str = ""
    logs: str = ""
    deleted_from_ray: bool = False


def _go_time(ts: str) -> str:
    """metav1.Time formatted with Go's %v, as KubeRay's messages print it."""
    return datetime.fromtimestamp(ts_to_epoch(ts), timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _ms_ts(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeRayOperator:
    def __init__(self, api: KubeApiServer, ray: Any, config: OperatorConfig | None = None):
        self.api, self.ray = api, ray
        self.store = api.store
        self.cfg = config or OperatorConfig()
        self.history: dict[str, list[Attempt]] = {}  # "<ns>/<rayjob>" -> attempts
        self.errors: list[str] = []  # tracebacks of reconcile bugs (tests assert it stays empty)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._teardowns: dict[str, threading.Thread] = {}  # cluster uid -> thread
        self._submitters: list[threading.Thread] = []
        self._submitter_headers: dict[tuple[str, str], str] = {}  # (ns, pod) -> what the submitter printed
        self._busy_ids: set[str] = set()  # submission ids whose Ray record is being cleaned up
        self._lock = threading.Lock()
        self._client = None
        self.reconciles = 0

    # -- lifecycle
    def start(self) -> KubeRayOperator:
        self._client = self.ray.job_client()
        self._thread = threading.Thread(target=self._loop, name="kuberay-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self, cleanup: bool = True) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        for t in self._submitters + list(self._teardowns.values()):
            t.join(timeout=self.cfg.stop_wait_s + 5)
        if cleanup:
            self.cleanup_ray()

    def cleanup_ray(self) -> None:
        """Stop and forget every Ray job this operator submitted (the shared Ray is clean afterwards)."""
        client = self.ray.job_client()
        for attempts in self.history.values():
            for a in attempts:
                if not a.deleted_from_ray:
                    self._stop_and_forget(client, a, "standin-shutdown")

    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.resync_s):
            try:
                self.reconcile_all()
            except Exception:
                self.errors.append(traceback.format_exc())
                traceback.print_exc()

    def reconcile_all(self) -> None:
        self.reconciles += 1
        for rc in self.store.list(RAYCLUSTERS):
            self._reconcile_cluster(rc)
        for job in self.store.list(JOBS):
            self._reconcile_submitter(job)
        for rj in self.store.list(RAYJOBS):
            try:
                self.reconcile(rj)
            except Exception:
                self.errors.append(traceback.format_exc())
                traceback.print_exc()

    # -- store helpers
    def _mutate(self, key: tuple[str, str], obj: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        m = obj["metadata"]
        return self.store.mutate(key, m.get("namespace", ""), m["name"], fn, expect_uid=m["uid"])

    def _owner_ref(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _attempt(self, rj: dict[str, Any], submission_id: str) -> Attempt | None:
        key = f"{rj['metadata']['namespace']}/{rj['metadata']['name']}"
        for a in reversed(self.history.get(key, [])):
            if a.submission_id == submission_id and not a.deleted_from_ray:
                return a
        return None

    # ----------------------------------------------------------------------------------------------
    # validation (utils/validation.go: ValidateRayJobMetadata / ValidateRayJobSpec / ValidateRayJobStatus)

    def validate(self, rj: dict[str, Any]) -> str | None:
        name = rj["metadata"]["name"]
        if len(name) > MAX_RAYJOB_NAME:
            return f"The RayJob metadata is invalid: RayJob name should be no more than {MAX_RAYJOB_NAME} characters"
        errs = dns1035_label_errors(name)
        if errs:
            return f"The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: [{' '.join(errs)}]"
        spec = rj.get("spec") or {}
        if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
            return ("The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false is not allowed "
                    "to be suspended")
        ttl = spec.get("ttlSecondsAfterFinished") or 0
        if ttl < 0:
            return "The RayJob spec is invalid: TTLSecondsAfterFinished must be a non-negative integer"
        if not spec.get("shutdownAfterJobFinishes") and ttl > 0:
            return ("The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false cannot have "
                    "TTLSecondsAfterFinished")
        ds = spec.get("deletionStrategy")
        if ds is not None:
            if not self.cfg.feature_gates.get("RayJobDeletionPolicy"):
                return "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy"
            legacy = ds.get("onSuccess") is not None or ds.get("onFailure") is not None
            rules = bool(ds.get("deletionRules"))
            if rules and spec.get("shutdownAfterJobFinishes"):
                return ("The RayJob spec is invalid: spec.shutdownAfterJobFinishes and "
                        "spec.deletionStrategy.deletionRules are mutually exclusive")
            if rules and legacy:
                return ("The RayJob spec is invalid: Cannot use both legacy onSuccess/onFailure fields and "
                        "deletionRules simultaneously")
            if not legacy and not rules:
                return ("The RayJob spec is invalid: DeletionStrategy requires either BOTH onSuccess and onFailure, "
                        "OR the deletionRules field (cannot be empty)")
        if spec.get("clusterSelector"):
            return "The RayJob spec is invalid: clusterSelector mode is not supported by the kube stand-in"
        rcs = spec.get("rayClusterSpec")
        if rcs is None:
            return "The RayJob spec is invalid: one of RayClusterSpec or ClusterSelector must be set"
        if spec.get("submissionMode") == "InteractiveMode" and (spec.get("backoffLimit") or 0) > 0:
            return "The RayJob spec is invalid: BackoffLimit is incompatible with InteractiveMode"
        err = self._validate_cluster_spec(rcs)
        if err:
            return f"The RayJob spec is invalid: {err}"
        try:
            env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
            if not isinstance(env, dict):
                raise ValueError("not a map")
        except (yaml.YAMLError, ValueError) as e:
            return f"failed to unmarshal RuntimeEnvYAML: {spec.get('runtimeEnvYAML')}: {e}"
        if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
            return "The RayJob spec is invalid: activeDeadlineSeconds must be a positive integer"
        if spec.get("preRunningDeadlineSeconds") is not None and spec["preRunningDeadlineSeconds"] <= 0:
            return "The RayJob spec is invalid: preRunningDeadlineSeconds must be a positive integer"
        if spec.get("backoffLimit") is not None and spec["backoffLimit"] < 0:
            return "The RayJob spec is invalid: backoffLimit must be a positive integer"
        st = rj.get("status") or {}
        if st.get("jobDeploymentStatus") == "Waiting" and spec.get("submissionMode") != "InteractiveMode":
            return ("The RayJob status is invalid: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is "
                    "not InteractiveMode")
        return None

    @staticmethod
    def _validate_cluster_spec(rcs: dict[str, Any]) -> str | None:
        head = ((rcs.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
        if not head.get("containers"):
            return "headGroupSpec should have at least one container"
        for wg in rcs.get("workerGroupSpecs") or []:
            if not (((wg.get("template") or {}).get("spec") or {}).get("containers")):
                return "workerGroupSpec should have at least one container"
            if not rcs.get("enableInTreeAutoscaling"):
                if wg.get("minReplicas") is None or wg.get("maxReplicas") is None:
                    return (f"worker group {wg.get('groupName')} must set both minReplicas and maxReplicas when "
                            f"autoscaling is disabled")
            mn, mx = wg.get("minReplicas"), wg.get("maxReplicas")
            if mn is not None and mn < 0:
                return f"worker group {wg.get('groupName')} has negative minReplicas {mn}"
            if mx is not None and mx < 0:
                return f"worker group {wg.get('groupName')} has negative maxReplicas {mx}"
            if mn is not None and mx is not None and mn > mx:
                return f"worker group {wg.get('groupName')} has minReplicas {mn} greater than maxReplicas {mx}"
        for name, group in [("Head", rcs.get("headGroupSpec") or {})] + [
                (wg.get("groupName", ""), wg) for wg in rcs.get("workerGroupSpecs") or []]:
            params = group.get("rayStartParams") or {}
            if "labels" in params:
                return (f"rayStartParams['labels'] is not supported for {name} group; please use the top-level "
                        f"Labels field instead")
        return None

    # ----------------------------------------------------------------------------------------------
    # the RayJob reconcile

    def reconcile(self, rj: dict[str, Any]) -> None:
        meta, spec = rj["metadata"], rj.get("spec") or {}
        if spec.get("managedBy") not in (None, "ray.io/kuberay-operator"):
            return
        if meta.get("deletionTimestamp"):
            return self._reconcile_deletion(rj)
        old = rj.get("status") or {}
        st = copy.deepcopy(old)
        err = self.validate(rj)
        if err:
            st.update(jobDeploymentStatus="ValidationFailed", reason="ValidationFailed", message=err)
            if st != old:
                self._write_status(rj, st)
            return
        dep = st.get("jobDeploymentStatus") or ""
        mode = spec.get("submissionMode") or "K8sJobMode"
        if dep == "":
            if FINALIZER not in (meta.get("finalizers") or []):
                rj = self._mutate(RAYJOBS, rj, lambda o: o["metadata"].setdefault("finalizers", []).append(FINALIZER)) or rj
            if not (st.get("jobId") and st.get("rayClusterName") and st.get("jobStatus")):
                if mode != "InteractiveMode" and not st.get("jobId"):
                    st["jobId"] = spec.get("jobId") or f"{meta['name']}-{rand_suffix()}"
                if not st.get("rayClusterName"):
                    st["rayClusterName"] = f"{meta['name']}-{rand_suffix()}"
                st["jobDeploymentStatus"] = "Initializing"
                st["startTime"] = now_ts()
        elif dep == "Initializing":
            if not (self._suspending(spec, st) or self._active_deadline(spec, st) or self._prerunning_deadline(spec, st)):
                self._initializing(rj, spec, st, mode)
        elif dep == "Waiting":
            if not self._prerunning_deadline(spec, st):
                if not spec.get("jobId"):
                    return
                st["jobId"] = spec["jobId"]
                st["jobDeploymentStatus"] = "Running"
        elif dep == "Running":
            if not (self._suspending(spec, st) or self._active_deadline(spec, st) or self._grace_period(st)
                    or self._status_check_timeout(st)):
                self._running(rj, spec, st, mode)
        elif dep in ("Suspending", "Retrying"):
            if not self._delete_cluster_and_submitter(rj, st):
                return
            for k in ("rayClusterStatus", "rayClusterName", "dashboardURL", "jobId", "message", "reason",
                      "rayJobInfo", "jobStatusCheckFailureStartTime", "jobStatus"):
                st.pop(k, None)
            st["jobDeploymentStatus"] = "Suspended" if dep == "Suspending" else ""
        elif dep == "Suspended":
            if spec.get("suspend"):
                return
            st.pop("jobStatus", None)
            st["jobDeploymentStatus"] = ""
        elif dep in TERMINAL_DEPLOYMENT:
            return self._finished(rj, spec, st)
        else:  # ValidationFailed and anything unknown: KubeRay just requeues
            return
        self._backoff(spec, st)
        self._update_status(rj, old, st)

    # -- status writing (updateRayJobStatus)
    def _update_status(self, rj: dict[str, Any], old: dict[str, Any], st: dict[str, Any]) -> None:
        changed = any(old.get(k) != st.get(k) for k in ("jobStatus", "jobDeploymentStatus", "rayClusterStatus",
                                                        "jobStatusCheckFailureStartTime"))
        if not changed:
            return
        if st.get("jobDeploymentStatus") in TERMINAL_DEPLOYMENT:
            st["endTime"] = now_ts()
        self._write_status(rj, st)

    def _write_status(self, rj: dict[str, Any], st: dict[str, Any]) -> None:
        clean = {k: v for k, v in st.items() if v not in (None, "", {})}
        self._mutate(RAYJOBS, rj, lambda o: o.__setitem__("status", clean))

    # -- checks shared by states
    @staticmethod
    def _suspending(spec: dict[str, Any], st: dict[str, Any]) -> bool:
        if spec.get("suspend") and st.get("jobDeploymentStatus") in ("Running", "Initializing"):
            st["jobDeploymentStatus"] = "Suspending"
            return True
        return False

    @staticmethod
    def _active_deadline(spec: dict[str, Any], st: dict[str, Any]) -> bool:
        ads = spec.get("activeDeadlineSeconds")
        if ads is None or not st.get("startTime") or time.time() < ts_to_epoch(st["startTime"]) + ads:
            return False
        st.update(jobDeploymentStatus="Failed", reason="DeadlineExceeded",
                  message=f"The RayJob has passed the activeDeadlineSeconds. StartTime: {_go_time(st['startTime'])}. "
                          f"ActiveDeadlineSeconds: {ads}")
        return True

    @staticmethod
    def _prerunning_deadline(spec: dict[str, Any], st: dict[str, Any]) -> bool:
        prd = spec.get("preRunningDeadlineSeconds")
        if prd is None or not st.get("startTime") or time.time() < ts_to_epoch(st["startTime"]) + prd:
            return False
        st.update(jobDeploymentStatus="Failed", reason="PreRunningDeadlineExceeded",
                  message=f"The RayJob has passed the preRunningDeadlineSeconds. StartTime: "
                          f"{_go_time(st['startTime'])}. PreRunningDeadlineSeconds: {prd}")
        return True

    def _grace_period(self, st: dict[str, Any]) -> bool:
        end = (st.get("rayJobInfo") or {}).get("endTime")
        if st.get("jobStatus") not in TERMINAL_JOB or not end:
            return False
        if time.time() < ts_to_epoch(end) + self.cfg.transition_grace_period_s:
            return False
        st["jobDeploymentStatus"] = "Failed" if st.get("jobStatus") == "FAILED" else "Complete"
        st["reason"] = "JobDeploymentStatusTransitionGracePeriodExceeded"
        st["message"] = ("JobDeploymentStatus does not transition to Complete or Failed within the grace period "
                         "after JobStatus reaches a terminal state.")
        return True

    def _status_check_timeout(self, st: dict[str, Any]) -> bool:
        t0 = st.get("jobStatusCheckFailureStartTime")
        if not t0 or time.time() < ts_to_epoch(t0) + self.cfg.status_check_timeout_s:
            return False
        st.update(jobDeploymentStatus="Failed", reason="JobStatusCheckTimeoutExceeded",
                  message=f"Job status checks have been failing since {_go_time(t0)[:19]}; exceeded timeout of "
                          f"{int(self.cfg.status_check_timeout_s)}s")
        return True

    @staticmethod
    def _backoff(spec: dict[str, Any], st: dict[str, Any]) -> None:
        failed, succeeded = st.get("failed") or 0, st.get("succeeded") or 0
        if st.get("jobDeploymentStatus") == "Failed":
            failed += 1
        if st.get("jobStatus") == "SUCCEEDED" and st.get("jobDeploymentStatus") == "Complete":
            succeeded += 1
        st["failed"], st["succeeded"] = failed, succeeded
        limit = spec.get("backoffLimit")
        if st.get("jobDeploymentStatus") == "Failed" and limit is not None and failed < limit + 1:
            if st.get("reason") in ("DeadlineExceeded", "JobStatusCheckTimeoutExceeded"):
                return
            st["jobDeploymentStatus"] = "Retrying"

    # -- Initializing
    def _initializing(self, rj: dict[str, Any], spec: dict[str, Any], st: dict[str, Any], mode: str) -> None:
        cluster = self._get_or_create_cluster(rj, st)
        if not st.get("dashboardURL"):
            cstatus = cluster.get("status") or {}
            if cstatus.get("state") != "ready":
                st["rayClusterStatus"] = cstatus
                return
            st["dashboardURL"] = self.ray.dashboard_address
        if mode == "InteractiveMode":
            st["jobDeploymentStatus"] = "Waiting"
            return
        if mode == "K8sJobMode":
            self._create_submitter_job_if_needed(rj, st, cluster)
        st["jobDeploymentStatus"] = "Running"

    # -- Running
    def _running(self, rj: dict[str, Any], spec: dict[str, Any], st: dict[str, Any], mode: str) -> None:
        cluster = self._get_or_create_cluster(rj, st)
        finished_at: float | None = None
        if mode == "K8sJobMode":
            job = self.store.get(JOBS, rj["metadata"]["namespace"], rj["metadata"]["name"])
            if job is None:
                return
            conds = (job.get("status") or {}).get("conditions") or []
            failed = next((c for c in conds if c["type"] == "Failed" and c["status"] == "True"), None)
            done = next((c for c in conds if c["type"] in ("Complete", "Failed") and c["status"] == "True"), None)
            if done:
                finished_at = ts_to_epoch(done["lastTransitionTime"])
            if finished_at and time.time() >= finished_at + self.cfg.submitter_finished_timeout_s:
                st.update(jobStatus="FAILED", jobDeploymentStatus="Failed",
                          reason="JobDeploymentStatusTransitionGracePeriodExceeded",
                          message=f"The RayJob submitter finished at {_go_time(done['lastTransitionTime'])[:19]} but the "
                                  f"ray job did not reach terminal state within "
                                  f"{int(self.cfg.submitter_finished_timeout_s)}s")
                return
            if failed:
                st["jobDeploymentStatus"] = "Failed"
                if st.get("jobStatus") == "FAILED":
                    st["reason"] = "AppFailed"
                else:
                    st["reason"] = "SubmissionFailed"
                    st["message"] = (f"Job submission has failed. Reason: {failed.get('reason', '')}. "
                                     f"Message: {failed.get('message', '')}")
                return
        job_id = st.get("jobId", "")
        try:
            info = self._client.get_job_info(job_id)
        except Exception as e:  # noqa: BLE001 - the dashboard client raises RuntimeError for HTTP errors
            if "status code 404" in str(e) or "does not exist" in str(e):
                if mode in ("HTTPMode", "SidecarMode"):
                    try:
                        self._submit(rj, st, cluster, via_shell=False)
                        st.pop("jobStatusCheckFailureStartTime", None)
                    except Exception:  # noqa: BLE001
                        st.setdefault("jobStatusCheckFailureStartTime", now_ts())
                    return
                if finished_at:
                    st.update(jobDeploymentStatus="Failed", reason="AppFailed",
                              message="Submitter completed but Ray job not found in RayCluster.")
                return
            st.setdefault("jobStatusCheckFailureStartTime", now_ts())
            return
        st.pop("jobStatusCheckFailureStartTime", None)
        status = info.status.value if hasattr(info.status, "value") else str(info.status)
        attempt = self._attempt(rj, job_id)
        if attempt is not None:
            attempt.status, attempt.message = status, info.message or ""
        terminal = status in TERMINAL_JOB
        if mode == "K8sJobMode":
            terminal = terminal and finished_at is not None
        dep, reason = "Running", ""
        if terminal:
            dep = "Failed" if status == "FAILED" else "Complete"
            reason = "AppFailed" if status == "FAILED" else ""
        st["rayClusterStatus"] = (cluster.get("status") or {})
        st.update(jobStatus=status, jobDeploymentStatus=dep, reason=reason, message=info.message or "")
        rji = st.setdefault("rayJobInfo", {})
        if info.start_time:
            rji["startTime"] = _ms_ts(info.start_time)
        if info.end_time:
            rji["endTime"] = _ms_ts(info.end_time)

    # -- Complete / Failed
    def _finished(self, rj: dict[str, Any], spec: dict[str, Any], st: dict[str, Any]) -> None:
        end = st.get("endTime")
        if not end:
            return
        ds = spec.get("deletionStrategy")
        if ds is not None and self.cfg.feature_gates.get("RayJobDeletionPolicy"):
            if ds.get("deletionRules"):
                return self._deletion_rules(rj, ds["deletionRules"], st)
            pol = (ds.get("onSuccess") if st.get("jobStatus") == "SUCCEEDED" else
                   ds.get("onFailure") if st.get("jobStatus") == "FAILED" else None)
            policy = (pol or {}).get("policy")
            if not policy or policy == "DeleteNone":
                return
            if time.time() >= ts_to_epoch(end) + (spec.get("ttlSecondsAfterFinished") or 0):
                self._execute_policy(rj, st, policy)
            return
        if spec.get("shutdownAfterJobFinishes"):
            if time.time() < ts_to_epoch(end) + (spec.get("ttlSecondsAfterFinished") or 0):
                return
            if self.cfg.delete_rayjob_after_job_finishes:
                self._delete_rayjob(rj)
            else:
                self._delete_cluster(rj, st)

    def _deletion_rules(self, rj: dict[str, Any], rules: list[dict[str, Any]], st: dict[str, Any]) -> None:
        order = {"DeleteSelf": 4, "DeleteCluster": 3, "DeleteWorkers": 2, "DeleteNone": 1}
        overdue = []
        for rule in rules:
            cond = rule.get("condition") or {}
            if "jobStatus" in cond:
                if cond["jobStatus"] != st.get("jobStatus"):
                    continue
            elif cond.get("jobDeploymentStatus") != st.get("jobDeploymentStatus"):
                continue
            if time.time() < ts_to_epoch(st["endTime"]) + (cond.get("ttlSeconds") or 0):
                continue
            if self._policy_done(rj, st, rule["policy"]):
                continue
            overdue.append(rule)
        if overdue:
            self._execute_policy(rj, st, max(overdue, key=lambda r: order.get(r["policy"], 0))["policy"])

    def _policy_done(self, rj: dict[str, Any], st: dict[str, Any], policy: str) -> bool:
        cl = self.store.get(RAYCLUSTERS, rj["metadata"]["namespace"], st.get("rayClusterName", ""))
        if policy == "DeleteCluster":
            return cl is None or bool(cl["metadata"].get("deletionTimestamp"))
        if policy == "DeleteWorkers":
            return cl is None or bool(cl["metadata"].get("deletionTimestamp")) or all(
                wg.get("suspend") for wg in (cl.get("spec") or {}).get("workerGroupSpecs") or [])
        return policy == "DeleteNone"

    def _execute_policy(self, rj: dict[str, Any], st: dict[str, Any], policy: str) -> None:
        if policy == "DeleteCluster":
            self._delete_cluster(rj, st)
        elif policy == "DeleteSelf":
            self._delete_rayjob(rj)
        elif policy == "DeleteWorkers":
            cl = self.store.get(RAYCLUSTERS, rj["metadata"]["namespace"], st.get("rayClusterName", ""))
            if cl is not None:
                def suspend(o: dict[str, Any]) -> None:
                    for wg in (o.get("spec") or {}).get("workerGroupSpecs") or []:
                        wg["suspend"] = True
                self._mutate(RAYCLUSTERS, cl, suspend)
                for pod in self.store.list(PODS, cl["metadata"]["namespace"],
                                           f"ray.io/cluster={cl['metadata']['name']},ray.io/node-type=worker"):
                    self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _delete_rayjob(self, rj: dict[str, Any]) -> None:
        try:
            self.store.delete(RAYJOBS, rj["metadata"]["namespace"], rj["metadata"]["name"])
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _delete_cluster(self, rj: dict[str, Any], st: dict[str, Any]) -> bool:
        """deleteClusterResources: True once the RayCluster is gone."""
        name = st.get("rayClusterName")
        if not name:
            return True
        cl = self.store.get(RAYCLUSTERS, rj["metadata"]["namespace"], name)
        if cl is None:
            return True
        if not cl["metadata"].get("deletionTimestamp"):
            self.store.delete(RAYCLUSTERS, rj["metadata"]["namespace"], name)
        return False

    def _delete_cluster_and_submitter(self, rj: dict[str, Any], st: dict[str, Any]) -> bool:
        cluster_gone = self._delete_cluster(rj, st)
        job_gone = True
        if (rj.get("spec") or {}).get("submissionMode", "K8sJobMode") == "K8sJobMode":
            job = self.store.get(JOBS, rj["metadata"]["namespace"], rj["metadata"]["name"])
            if job is not None:
                job_gone = False
                if not job["metadata"].get("deletionTimestamp"):
                    self.store.delete(JOBS, rj["metadata"]["namespace"], rj["metadata"]["name"], propagation="Background")
        return cluster_gone and job_gone

    # -- deletion of the RayJob (finalizer)
    def _reconcile_deletion(self, rj: dict[str, Any]) -> None:
        if FINALIZER not in (rj["metadata"].get("finalizers") or []):
            return
        st = rj.get("status") or {}
        if st.get("jobStatus") not in TERMINAL_JOB and st.get("jobId"):
            try:
                self._client.stop_job(st["jobId"])
                a = self._attempt(rj, st["jobId"])
                if a is not None and not a.stopped_by:
                    a.stopped_by = "rayjob-deleted"
            except Exception:  # noqa: BLE001 - "Remove the finalizer no matter StopJob() succeeds or not."
                pass
        self._mutate(RAYJOBS, rj, lambda o: o["metadata"].__setitem__(
            "finalizers", [f for f in o["metadata"].get("finalizers") or [] if f != FINALIZER]))

    # ----------------------------------------------------------------------------------------------
    # the RayCluster (a store object backed by the shared local Ray) and its pods

    def _get_or_create_cluster(self, rj: dict[str, Any], st: dict[str, Any]) -> dict[str, Any]:
        ns, name = rj["metadata"]["namespace"], st["rayClusterName"]
        cl = self.store.get(RAYCLUSTERS, ns, name)
        if cl is not None:
            return cl
        spec = rj["spec"]
        labels = {**(rj["metadata"].get("labels") or {}), "ray.io/originated-from-cr-name": rj["metadata"]["name"],
                  "ray.io/originated-from-crd": "RayJob",
                  "ray.io/job-submission-mode": spec.get("submissionMode") or "K8sJobMode"}
        body = {"metadata": {"name": name, "labels": labels,
                             "annotations": dict(rj["metadata"].get("annotations") or {}),
                             "ownerReferences": [self._owner_ref(rj)], "finalizers": [CLEANUP_FINALIZER]},
                "spec": copy.deepcopy(spec["rayClusterSpec"]), "status": {}}
        body["metadata"]["annotations"][ANN_SUBMISSION] = st.get("jobId", "")
        cl = self.store.create(RAYCLUSTERS, ns, body)
        self._create_cluster_pods(rj, cl)
        return cl

    def _schedulable(self, rj: dict[str, Any]) -> bool:
        s = self.cfg.schedulable
        return s(rj) if callable(s) else bool(s)

    def _create_cluster_pods(self, rj: dict[str, Any], cl: dict[str, Any]) -> None:
        ns, cname = cl["metadata"]["namespace"], cl["metadata"]["name"]
        groups = [("headgroup", "head", (cl["spec"].get("headGroupSpec") or {}), 1)]
        for wg in cl["spec"].get("workerGroupSpecs") or []:
            if not wg.get("suspend"):
                groups.append((wg.get("groupName", "workers"), "worker", wg, wg.get("replicas", wg.get("minReplicas", 0)) or 0))
        for group, kind, spec, n in groups:
            tmpl = spec.get("template") or {}
            for _ in range(n):
                pname = f"{cname}-head-{rand_suffix()}" if kind == "head" else f"{cname}-{group}-worker-{rand_suffix()}"
                labels = {**((tmpl.get("metadata") or {}).get("labels") or {}), "ray.io/cluster": cname,
                          "ray.io/node-type": kind, "ray.io/group": group, "ray.io/is-ray-node": "yes",
                          "ray.io/identifier": f"{cname}-{kind}", "app.kubernetes.io/name": "kuberay",
                          "app.kubernetes.io/created-by": "kuberay-operator"}
                containers = copy.deepcopy((tmpl.get("spec") or {}).get("containers") or [{"name": "ray"}])
                pod = make_pod(pname, labels=labels, containers=containers, phase="Pending",
                               service_account=(tmpl.get("spec") or {}).get("serviceAccountName", "default"))
                pod["metadata"]["ownerReferences"] = [self._owner_ref(cl)]
                self.store.create(PODS, ns, pod)
                self.store.logs[(ns, pname)] = (f"[kube stand-in] {kind} pod of RayCluster {cname}: backed by the "
                                                f"local Ray cluster at {self.ray.gcs_address}\n")

    def _env_problem(self, ns: str, cl: dict[str, Any]) -> str | None:
        head = (((cl.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
        for c in head.get("containers") or []:
            _, err = self.resolve_env(ns, c)
            if err:
                return err
        return None

    def resolve_env(self, ns: str, container: dict[str, Any]) -> tuple[dict[str, str], str | None]:
        """A container's env as the kubelet builds it: envFrom first, then env (value / secretKeyRef /
        configMapKeyRef / $(VAR) expansion). Returns (env, CreateContainerConfigError message or None)."""
        env: dict[str, str] = {}

        def source(kind: str, name: str) -> dict[str, str] | None:
            key = ("", "secrets") if kind == "secret" else ("", "configmaps")
            obj = self.store.get(key, ns, name)
            if obj is None:
                return None
            if kind == "secret":
                return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()} | \
                    dict(obj.get("stringData") or {})
            return dict(obj.get("data") or {})

        for ef in container.get("envFrom") or []:
            kind, ref = ("secret", ef["secretRef"]) if ef.get("secretRef") else ("configmap", ef.get("configMapRef") or {})
            data = source(kind, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                return env, f'{kind} "{ref.get("name")}" not found'
            for k, v in data.items():
                env[(ef.get("prefix") or "") + k] = v
        for e in container.get("env") or []:
            if "value" in e or not e.get("valueFrom"):
                val = e.get("value", "")
                env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), val)
                continue
            vf = e["valueFrom"]
            ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef")
            if ref is None:
                continue  # fieldRef/resourceFieldRef: nothing to resolve here
            kind = "secret" if vf.get("secretKeyRef") else "configmap"
            data = source(kind, ref.get("name", ""))
            if data is None or ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                what = f'{kind} "{ref.get("name")}" not found' if data is None else \
                    f'couldn\'t find key {ref.get("key")} in {"Secret" if kind == "secret" else "ConfigMap"} {ns}/{ref.get("name")}'
                return env, what
            env[e["name"]] = data[ref["key"]]
        return env, None

    def _reconcile_cluster(self, cl: dict[str, Any]) -> None:
        meta = cl["metadata"]
        ns = meta["namespace"]
        if meta.get("deletionTimestamp"):
            if CLEANUP_FINALIZER in (meta.get("finalizers") or []) and meta["uid"] not in self._teardowns:
                t = threading.Thread(target=self._teardown, args=(cl,), name=f"teardown-{meta['name']}", daemon=True)
                self._teardowns[meta["uid"]] = t
                with self._lock:
                    self._busy_ids.add(meta.get("annotations", {}).get(ANN_SUBMISSION, ""))
                t.start()
            return
        owner = self.store.by_uid((meta.get("ownerReferences") or [{}])[0].get("uid", ""))
        pods = self.store.list(PODS, ns, f"ray.io/cluster={meta['name']}")
        age = time.time() - ts_to_epoch(meta["creationTimestamp"])
        sub_id = meta.get("annotations", {}).get(ANN_SUBMISSION, "")
        with self._lock:
            busy = sub_id in self._busy_ids
        # an older cluster of the same submission id still holds that Ray job record (a fresh cluster
        # would not have it): wait until it is torn down, as the new cluster's pods would still be starting
        busy = busy or any(c["metadata"]["uid"] != meta["uid"]
                           and (c["metadata"].get("annotations") or {}).get(ANN_SUBMISSION) == sub_id
                           for c in self.store.list(RAYCLUSTERS, ns))
        problem = self._env_problem(ns, cl)
        ready = (owner is not None and self._schedulable(owner) and problem is None and not busy
                 and age >= self.cfg.cluster_ready_after_s)
        unschedulable = owner is not None and not self._schedulable(owner)
        waiting = ({"reason": "CreateContainerConfigError", "message": problem} if problem
                   else {"reason": "ContainerCreating"})
        for pod in pods:
            want = "Running" if ready else "Pending"
            conds = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/1 nodes are available: kube stand-in: unschedulable"}
                     ] if want == "Pending" and unschedulable else []
            cur = (pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}
            if pod["status"].get("phase") != want or (want == "Pending" and cur.get("waiting") != waiting) \
                    or (pod["status"].get("conditions") or []) != conds:
                def set_phase(o: dict[str, Any], want: str = want, conds: list = conds) -> None:
                    o["status"]["phase"] = want
                    for cs in o["status"].get("containerStatuses") or []:
                        cs["ready"] = cs["started"] = want == "Running"
                        cs["state"] = {"running": {"startedAt": now_ts()}} if want == "Running" else {"waiting": waiting}
                    o["status"]["conditions"] = conds
                self._mutate(PODS, pod, set_phase)
        workers = [p for p in pods if p["metadata"]["labels"].get("ray.io/node-type") == "worker"]
        head = next((p for p in pods if p["metadata"]["labels"].get("ray.io/node-type") == "head"), None)
        want_workers = sum((wg.get("replicas", wg.get("minReplicas", 0)) or 0)
                           for wg in (cl.get("spec") or {}).get("workerGroupSpecs") or [] if not wg.get("suspend"))
        status = {"state": "ready" if ready else "", "desiredWorkerReplicas": want_workers,
                  "availableWorkerReplicas": len(workers) if ready else 0,
                  "readyWorkerReplicas": len(workers) if ready else 0,
                  "minWorkerReplicas": want_workers, "maxWorkerReplicas": want_workers,
                  "endpoints": {"dashboard": str(self.ray.dashboard_port), "gcs-server": str(self.ray.gcs_port)},
                  "head": {"podName": head["metadata"]["name"], "podIP": "127.0.0.1", "serviceIP": "127.0.0.1"} if head else {}}
        if not ready:
            status.pop("state")
        if (cl.get("status") or {}) != status:
            self._mutate(RAYCLUSTERS, cl, lambda o: o.__setitem__("status", status))

    def _teardown(self, cl: dict[str, Any]) -> None:
        """The cluster's pods and Ray processes go away: stop + forget its Ray job, then drop the finalizer."""
        meta = cl["metadata"]
        sub_id = meta.get("annotations", {}).get(ANN_SUBMISSION, "")
        try:
            owner = (meta.get("labels") or {}).get("ray.io/originated-from-cr-name", "")
            key = f"{meta['namespace']}/{owner}"
            client = self.ray.job_client()
            for a in self.history.get(key, []):
                if a.submission_id == sub_id and a.cluster == meta["name"] and not a.deleted_from_ray:
                    self._stop_and_forget(client, a, "cluster-deleted", before_forget=lambda a=a: self._submitter_lost(
                        meta["namespace"], owner, a.logs))
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            self.store.mutate(RAYCLUSTERS, meta["namespace"], meta["name"], lambda o: o["metadata"].__setitem__(
                "finalizers", [f for f in o["metadata"].get("finalizers") or [] if f != CLEANUP_FINALIZER]),
                expect_uid=meta["uid"])
            with self._lock:
                self._busy_ids.discard(sub_id)
            self._teardowns.pop(meta["uid"], None)

    def _submitter_lost(self, ns: str, rayjob: str, logs: str) -> None:
        """The cluster is going away: freeze the submitter pods' log (a pod still following fails)."""
        for pod in self.store.list(PODS, ns, f"job-name={rayjob}"):
            if (ns, pod["metadata"]["name"]) in self._submitter_headers:
                self._snapshot_log(ns, pod["metadata"]["name"], logs)
                if pod["status"].get("phase") == "Running":
                    self._mutate(PODS, pod, lambda o: _pod_done(o, 1))

    def _stop_and_forget(self, client: Any, a: Attempt, why: str,
                         before_forget: Callable[[], None] | None = None) -> None:
        try:
            info = client.get_job_info(a.submission_id)
        except Exception:  # noqa: BLE001 - never reached Ray or already forgotten
            a.deleted_from_ray = True
            return
        status = info.status.value
        if status not in TERMINAL_JOB:
            a.stopped_by = a.stopped_by or why
            try:
                client.stop_job(a.submission_id)
            except Exception:  # noqa: BLE001
                pass
            deadline = time.monotonic() + self.cfg.stop_wait_s
            while time.monotonic() < deadline:
                status = client.get_job_info(a.submission_id).status.value
                if status in TERMINAL_JOB:
                    break
                time.sleep(0.2)
        a.status = status
        try:
            a.logs = client.get_job_logs(a.submission_id)
        except Exception:  # noqa: BLE001
            pass
        if before_forget is not None:
            before_forget()
        try:
            client.delete_job(a.submission_id)
            a.deleted_from_ray = True
        except Exception:  # noqa: BLE001 - still not terminal: leave it, cleanup_ray() retries
            pass

    # ----------------------------------------------------------------------------------------------
    # the submitter (K8sJobMode): a batch/v1 Job + its Pod, which submit and follow the Ray job

    def _create_submitter_job_if_needed(self, rj: dict[str, Any], st: dict[str, Any], cluster: dict[str, Any]) -> None:
        ns, name = rj["metadata"]["namespace"], rj["metadata"]["name"]
        if self.store.get(JOBS, ns, name) is not None:
            return
        spec = rj["spec"]
        limit = ((spec.get("submitterConfig") or {}).get("backoffLimit"))
        labels = {"ray.io/originated-from-cr-name": name, "ray.io/originated-from-crd": "RayJob",
                  "app.kubernetes.io/created-by": "kuberay-operator"}
        head_c = ((((spec["rayClusterSpec"].get("headGroupSpec") or {}).get("template") or {}).get("spec") or {})
                  .get("containers") or [{}])[0]
        body = {"metadata": {"name": name, "labels": labels, "ownerReferences": [self._owner_ref(rj)],
                             "annotations": {ANN_SUBMISSION: st.get("jobId", ""), "standin.ray.io/cluster":
                                             cluster["metadata"]["name"]}},
                "spec": {"backoffLimit": 2 if limit is None else limit,
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "ray-job-submitter", "image": head_c.get("image", "")}]}}},
                "status": {"active": 0, "failed": 0, "succeeded": 0, "startTime": now_ts()}}
        self.store.create(JOBS, ns, body)

    def _reconcile_submitter(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        if meta.get("deletionTimestamp"):
            return
        ns = meta["namespace"]
        status = job.get("status") or {}
        if any(c["status"] == "True" and c["type"] in ("Complete", "Failed") for c in status.get("conditions") or []):
            return
        rj = self.store.by_uid((meta.get("ownerReferences") or [{}])[0].get("uid", ""))
        if rj is None:
            return
        pods = self.store.list(PODS, ns, f"batch.kubernetes.io/controller-uid={meta['uid']}")
        active = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
        cluster = self.store.get(RAYCLUSTERS, ns, meta["annotations"].get("standin.ray.io/cluster", ""))
        if not active and (cluster is None or cluster["metadata"].get("deletionTimestamp")):
            return  # a new submitter pod would wait for a dashboard that is gone, forever
        if not active:
            if status.get("failed", 0) > job["spec"]["backoffLimit"]:
                return self._finish_job(job, ok=False)
            pod = self._start_submitter_pod(rj, job)
            if pod is None:
                return
            active = [pod]
        pod = active[0]
        sub_id = meta["annotations"].get(ANN_SUBMISSION, "")
        try:
            info = self._client.get_job_info(sub_id)
        except Exception:  # noqa: BLE001 - not submitted (yet): the pod is still in its wait loop
            return
        attempt = self._attempt(rj, sub_id)
        if attempt is not None:
            attempt.status = info.status.value
        if info.status.value in TERMINAL_JOB:
            # `ray job logs --follow` returns once the job ended: the pod succeeds, the Job completes
            self._snapshot_log(ns, pod["metadata"]["name"])
            self._mutate(PODS, pod, lambda o: _pod_done(o, 0))
            self._finish_job(job, ok=True)

    def _start_submitter_pod(self, rj: dict[str, Any], job: dict[str, Any]) -> dict[str, Any] | None:
        ns, jname = job["metadata"]["namespace"], job["metadata"]["name"]
        labels = {"job-name": jname, "batch.kubernetes.io/job-name": jname,
                  "controller-uid": job["metadata"]["uid"], "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                  **job["metadata"]["labels"]}
        pod = make_pod(f"{jname}-{rand_suffix()}", labels=labels,
                       containers=job["spec"]["template"]["spec"]["containers"], phase="Running")
        pod["metadata"]["ownerReferences"] = [self._owner_ref(job)]
        pod = self.store.create(PODS, ns, pod)
        pname = pod["metadata"]["name"]
        self._mutate(JOBS, job, lambda o: o["status"].__setitem__("active", 1))
        # the pod runs on its own (a real one would): submission does not block the operator loop
        t = threading.Thread(target=self._run_submitter, args=(rj, job, pod), name=f"submitter-{pname}", daemon=True)
        self._submitters.append(t)
        t.start()
        return pod

    def _run_submitter(self, rj: dict[str, Any], job: dict[str, Any], pod: dict[str, Any]) -> None:
        ns, pname = pod["metadata"]["namespace"], pod["metadata"]["name"]
        st = rj.get("status") or {}
        sub_id = st.get("jobId", "")
        cluster = self.store.get(RAYCLUSTERS, ns, job["metadata"]["annotations"].get("standin.ray.io/cluster", ""))
        header = [f"Job submission server address: http://{st.get('dashboardURL', self.ray.dashboard_address)}"]
        try:
            client = self.ray.job_client()
            exists = True
            try:
                client.get_job_info(sub_id)
            except Exception:  # noqa: BLE001
                exists = False
            if not exists:  # `if ! ray job status ...; then ray job submit --no-wait ...; fi`
                shell_out = self._submit(rj, st, cluster, via_shell=self.cfg.submitter_shell, client=client)
                header = shell_out + header + ["", "-------------------------------------------------------",
                                               f"Job '{sub_id}' submitted successfully",
                                               "-------------------------------------------------------", ""]
        except Exception as e:  # noqa: BLE001 - the pod fails; the Job retries up to its backoffLimit
            self.store.logs[(ns, pname)] = "\n".join(header + [f"Error: {e}"]) + "\n"
            self._mutate(PODS, pod, lambda o: _pod_done(o, 1))
            self._mutate(JOBS, job, lambda o: o["status"].update(active=0, failed=o["status"].get("failed", 0) + 1))
            return
        head_text = "\n".join(header) + "\n"
        lock = threading.Lock()

        def provider() -> str:  # raises once the job is gone: readers fall back to the last snapshot
            with lock:
                return head_text + client.get_job_logs(sub_id)

        with self.store.lock:
            if self.store.get(PODS, ns, pname) is not None:
                self.store.logs[(ns, pname)] = head_text
                self.store.log_providers[(ns, pname)] = provider
                self._submitter_headers[(ns, pname)] = head_text

    def _snapshot_log(self, ns: str, pod: str, logs: str | None = None) -> None:
        """Freeze a submitter pod's log: `logs` (the Ray job's, when known) or the live provider's."""
        provider = self.store.log_providers.pop((ns, pod), None)
        if logs is not None:
            self.store.logs[(ns, pod)] = self._submitter_headers.get((ns, pod), "") + logs
            return
        if provider is not None:
            try:
                self.store.logs[(ns, pod)] = provider()
            except Exception:  # noqa: BLE001 - the job is already gone: keep the last snapshot
                pass

    def _finish_job(self, job: dict[str, Any], *, ok: bool) -> None:
        cond = ({"type": "Complete", "status": "True", "lastProbeTime": now_ts(), "lastTransitionTime": now_ts()} if ok else
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastProbeTime": now_ts(),
                 "lastTransitionTime": now_ts()})

        def fin(o: dict[str, Any]) -> None:
            s = o["status"]
            s["conditions"] = [*(s.get("conditions") or []), cond]
            s["active"] = 0
            if ok:
                s["succeeded"] = s.get("succeeded", 0) + 1
                s["completionTime"] = now_ts()
        self._mutate(JOBS, job, fin)

    # ----------------------------------------------------------------------------------------------
    # submission through the Ray Job Submission API

    def submit_words(self, entrypoint: str, runtime_env: dict[str, Any] | None = None,
                     metadata: dict[str, str] | None = None, job_id: str = "") -> tuple[dict[str, str], list[str], list[str]]:
        """What KubeRay's submitter `bash -ce "… ray job submit --address … --no-wait --runtime-env-json "<json>"
        --metadata-json "<json>" --submission-id <id> -- <entrypoint> ; …"` hands `ray job submit` (common/job.go
        BuildJobSubmitCommand): (its options after the shell, the entrypoint argv, what the shell printed).
        The JSON values are Go-`strconv.Quote`d, i.e. inside bash double quotes, where `$(…)`, backticks and
        `${…}` still expand; the submission id and the entrypoint are pasted as they are. Runs bash in a
        scratch dir, as the submitter pod would."""
        opts: list[str] = []
        if runtime_env:
            opts += ["--runtime-env-json", go_quote(json.dumps(runtime_env, separators=(",", ":")))]
        if metadata:
            opts += ["--metadata-json", go_quote(json.dumps(metadata, separators=(",", ":")))]
        if job_id:
            opts += ["--submission-id", job_id]
        with tempfile.TemporaryDirectory(prefix="submitter") as d:
            words_file = Path(d) / "words"
            script = (f'__submit() {{ printf "%s\\0" "$@" > {shlex.quote(str(words_file))}; }}\n'
                      f"__submit {' '.join(opts)} -- {entrypoint.strip()} ;\n")
            r = subprocess.run(["/bin/bash", "-ce", script], cwd=d, capture_output=True, text=True, timeout=30,
                               env={"PATH": "/usr/bin:/bin", "HOME": d, "PYTHONUNBUFFERED": "1",
                                    "RAY_DASHBOARD_ADDRESS": self.ray.dashboard_address})
            out = (r.stdout + r.stderr).splitlines()
            if not words_file.exists():
                raise RuntimeError(f"submitter shell failed ({r.returncode}): {' '.join(out)[-500:]}")
            words = [w for w in words_file.read_text().split("\0")][:-1]
        sep = words.index("--") if "--" in words else len(words)
        flags = dict(zip(words[:sep:2], words[1:sep:2], strict=False))
        return flags, words[sep + 1:], out

    def entrypoint_words(self, entrypoint: str) -> tuple[list[str], list[str]]:
        """Only the entrypoint's words (see submit_words)."""
        _, words, out = self.submit_words(entrypoint)
        return words, out

    def _submit(self, rj: dict[str, Any], st: dict[str, Any], cluster: dict[str, Any] | None, *, via_shell: bool,
                client: Any = None) -> list[str]:
        spec = rj["spec"]
        ns = rj["metadata"]["namespace"]
        shell_out: list[str] = []
        entrypoint = spec.get("entrypoint", "").strip()
        runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
        if via_shell:
            flags, words, shell_out = self.submit_words(entrypoint, runtime_env, spec.get("metadata"), st["jobId"])
            entrypoint = shlex.join(words)  # ray job submit: shlex.join(argv after --)
            # ray job submit json.loads its --runtime-env-json: what the shell made of it is what Ray gets
            runtime_env = json.loads(flags["--runtime-env-json"]) if "--runtime-env-json" in flags else {}
        head = ((((spec["rayClusterSpec"].get("headGroupSpec") or {}).get("template") or {}).get("spec") or {})
                .get("containers") or [{}])[0]
        pod_env, _ = self.resolve_env(ns, head)
        if pod_env:
            runtime_env = {**runtime_env, "env_vars": {**pod_env, **(runtime_env.get("env_vars") or {})}}
        kwargs: dict[str, Any] = {}
        if spec.get("metadata"):
            kwargs["metadata"] = dict(spec["metadata"])
        if spec.get("entrypointNumCpus"):
            kwargs["entrypoint_num_cpus"] = spec["entrypointNumCpus"]
        if spec.get("entrypointNumGpus"):
            kwargs["entrypoint_num_gpus"] = spec["entrypointNumGpus"]
        if spec.get("entrypointResources"):
            kwargs["entrypoint_resources"] = json.loads(spec["entrypointResources"])
        sub_id = st["jobId"]
        key = f"{ns}/{rj['metadata']['name']}"
        attempt = Attempt(rayjob=rj["metadata"]["name"], cluster=(cluster or {}).get("metadata", {}).get("name", ""),
                          submission_id=sub_id, entrypoint=entrypoint, runtime_env=runtime_env, submitted_at=time.time())
        (client or self._client).submit_job(entrypoint=entrypoint, submission_id=sub_id, runtime_env=runtime_env or None,
                                            **kwargs)
        self.history.setdefault(key, []).append(attempt)
        return shell_out


def go_quote(text: str) -> str:
    """Go's strconv.Quote (ASCII control characters escaped, `"` and `\\` backslashed, the rest as is)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def _pod_done(o: dict[str, Any], code: int) -> None:
    o["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
    for cs in o["status"].get("containerStatuses") or []:
        cs["ready"] = cs["started"] = False
        cs["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                      "startedAt": now_ts(), "finishedAt": now_ts()}}
