"""Run a `slam …` step on an existing Ray cluster through Ray's Job Submission API, and wait for it.

    from slam.distributed.job_submission import JobSubmissionRunner
    runner = JobSubmissionRunner("http://raycluster-head:8265")      # token: RAY_AUTH_TOKEN(_PATH) / headers=
    res = runner.run_spec("s3://b/run/launch/x/step.json", submission_id_for(run_id, "train"))   # slam.launch.entry
    res = runner.run([sys.executable, "-c", "print(1)"], "my-job")   # your own argv (shlex-quoted, one shell parse)
    res.status, res.logs[-2000:]

    slam launch submit --address http://127.0.0.1:8265 --storage s3://b/run --run-id RUN --step train -- slam train …

This is the "long-lived RayCluster" target (k8s/base RayCluster, or `ray start --head` on a laptop);
`slam.launch.kuberay` is the one-cluster-per-job KubeRay RayJob target. Same idempotency rule: the submission id
is derived from the KFP run id + step, so a retried step re-attaches to the job it already submitted.
Ray refuses to reuse a submission id, so a retry after a *failure* submits `<id>-r1`, `<id>-r2`, …
Credentials are not passed here: the cluster's pods get them from Secrets (k8s/base).
Every request has a (connect, read) timeout, and reads/stops are retried with backoff on connection
errors and 5xx (slam.retry); a submit is retried only when it cannot have reached Ray (connection refused).
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slam.errors import SlamError
from slam.retry import Retry, retrying

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
MAX_ATTEMPTS = 20
TIMEOUT = (10, 60)  # seconds: connect, read (requests' default is to wait forever)


def _transient(e: BaseException) -> bool:
    """Connection refused/reset, timeouts, and the dashboard's 5xx (Ray raises RuntimeError with the code)."""
    import requests

    if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(f"status code {c}" in text for c in (500, 502, 503, 504))


def _client_class():
    """Ray's JobSubmissionClient with a timeout on every request (it forwards kwargs to requests)."""
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        request_timeout = TIMEOUT

        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", self.request_timeout)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedJobSubmissionClient


@dataclass
class JobResult:
    submission_id: str
    status: str
    message: str
    logs: str
    reattached: bool
    elapsed_s: float


def submission_id_for(run_id: str, step: str) -> str:
    """Deterministic submission id for one step of one run (same scheme as the RayJob name)."""
    from slam.launch.rayjob import rayjob_name

    return rayjob_name(run_id, step)


def _is_missing(e: Exception) -> bool:
    return "status code 404" in str(e) or "does not exist" in str(e)


class JobSubmissionRunner:
    """Get-or-submit, wait with a timeout, stream new log lines, return status and logs."""

    def __init__(self, address: str, *, client: Any = None, poll_s: float = 2.0,
                 echo: Callable[[str], None] | None = None, headers: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 retry: Retry | None = None):
        self.address, self.poll_s = address, poll_s
        self.echo = echo or (lambda s: log.info("%s", s))
        self.clock, self.sleep = clock, sleep
        self.retry = retry or Retry(attempts=6)
        if client is None:
            try:
                client = self._call("connect", lambda: _client_class()(address, headers=headers))
            except Exception as e:  # ConnectionError/RuntimeError: one line naming the address
                raise SlamError(f"cannot reach the Ray dashboard at {address}: {str(e).splitlines()[0]}") from None
        self.client = client

    def _call(self, what: str, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        return retrying(fn, what=f"Ray Jobs API {self.address}: {what}", transient=_transient,
                        policy=self.retry if retry else Retry(attempts=1), sleep=self.sleep, clock=self.clock)

    def info(self, submission_id: str) -> Any | None:
        try:
            return self._call(f"job {submission_id}", lambda: self.client.get_job_info(submission_id))
        except RuntimeError as e:
            if _is_missing(e):
                return None
            raise

    def latest_attempt(self, base_id: str) -> tuple[str, Any | None, int]:
        """(id, details, attempt number) of the newest existing attempt; details None = never submitted."""
        found: tuple[str, Any | None, int] = (base_id, None, 0)
        for n in range(MAX_ATTEMPTS):
            sid = base_id if n == 0 else f"{base_id}-r{n}"
            details = self.info(sid)
            if details is None:
                return found
            found = (sid, details, n)
        return found

    def submit(self, command: Sequence[str] | str, submission_id: str, *, env: dict[str, str] | None = None,
               metadata: dict[str, str] | None = None, entrypoint_num_cpus: float | None = None,
               entrypoint_num_gpus: float | None = None, retry_failed: bool = True,
               agent_wait_s: float = 60.0) -> tuple[str, bool]:
        """(submission id actually used, whether an existing job was re-attached)."""
        problems = []
        if not command:
            problems.append("command is empty")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", submission_id):
            problems.append(f"submission id {submission_id!r} must be 1-128 chars of letters, digits, . _ -")
        secretish = [k for k in (env or {}) if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", k, re.I)]
        if secretish:
            problems.append(f"env {secretish} look like credentials: give them to the cluster's pods from a Secret")
        if problems:
            raise SlamError("cannot submit Ray job: " + "; ".join(problems))
        sid, details, n = self.latest_attempt(submission_id)
        if details is not None:
            status = str(getattr(details.status, "value", details.status))
            if status not in ("FAILED", "STOPPED") or not retry_failed:
                self.echo(f"Ray job {sid}: re-attaching ({status})")
                return sid, True
            if n + 1 >= MAX_ATTEMPTS:
                raise SlamError(f"Ray job {submission_id} already failed {MAX_ATTEMPTS} times; not submitting again")
            self.echo(f"Ray job {sid}: previous attempt {status} ({details.message}); submitting attempt {n + 1}")
            sid = f"{submission_id}-r{n + 1}"
        runtime_env = {"env_vars": dict(env)} if env else None
        entrypoint = command if isinstance(command, str) else shlex.join(command)
        deadline = self.clock() + agent_wait_s
        import requests

        while True:
            try:
                self.client.submit_job(entrypoint=entrypoint, submission_id=sid, runtime_env=runtime_env,
                                       metadata=dict(metadata or {}), entrypoint_num_cpus=entrypoint_num_cpus,
                                       entrypoint_num_gpus=entrypoint_num_gpus)
                break
            except requests.ConnectionError as e:  # never reached Ray: safe to send again (a read timeout is not)
                if self.clock() >= deadline:
                    raise SlamError(f"cannot reach the Ray dashboard at {self.address} to submit {sid}: "
                                    f"{str(e).splitlines()[0][:200]}") from None
                self.sleep(2.0)
            except RuntimeError as e:
                if "already exists" in str(e):  # a parallel retry submitted it first
                    return sid, True
                # A freshly started head answers HTTP before its job agent is up: a transient 500.
                if "No available agent" in str(e) and self.clock() < deadline:
                    self.sleep(1.0)
                    continue
                raise SlamError(f"Ray rejected job {sid}: {str(e).splitlines()[0]}") from None
        self.echo(f"Ray job {sid}: submitted to {self.address}: {entrypoint}")
        return sid, False

    def wait(self, submission_id: str, *, timeout_s: float, reattached: bool = False) -> JobResult:
        t0 = self.clock()
        last_status, printed = "", 0
        while True:
            details = self.info(submission_id)
            if details is None:
                raise SlamError(f"Ray job {submission_id} is unknown to {self.address} (cluster restarted?)")
            status = str(getattr(details.status, "value", details.status))
            if status != last_status:
                self.echo(f"Ray job {submission_id}: {status}")
                last_status = status
            try:
                logs = self._call(f"logs of {submission_id}", lambda: self.client.get_job_logs(submission_id))
            except (RuntimeError, SlamError):
                logs = ""
            for line in logs[printed:].splitlines():
                self.echo(f"[{submission_id}] {line}")
            printed = max(printed, len(logs))
            if status in TERMINAL:
                result = JobResult(submission_id, status, details.message or "", logs, reattached, self.clock() - t0)
                if status != "SUCCEEDED":
                    last = next((ln for ln in reversed(logs.splitlines()) if ln.strip()), "")
                    raise SlamError(f"Ray job {submission_id} {status}: {details.message or ''}"
                                    + (f"; last log line: {last}" if last else ""))
                return result
            if self.clock() - t0 > timeout_s:
                raise SlamError(f"Ray job {submission_id} still {status} after {timeout_s:.0f}s; it keeps running "
                                f"(stop it: ray job stop --address {self.address} {submission_id}); "
                                "re-running the step re-attaches")
            self.sleep(self.poll_s)

    def run(self, command: Sequence[str], submission_id: str, *, timeout_s: float = 24 * 3600,
            **submit_kw: Any) -> JobResult:
        """Your own argv (it is shlex-quoted, then parsed once by the head's shell)."""
        sid, reattached = self.submit(list(command), submission_id, **submit_kw)
        return self.wait(sid, timeout_s=timeout_s, reattached=reattached)

    def run_spec(self, spec_uri: str, submission_id: str, *, timeout_s: float = 24 * 3600,
                 env: dict[str, str] | None = None, **submit_kw: Any) -> JobResult:
        """The constant entrypoint (slam.launch.entry) on the step spec at `spec_uri`: the spec URI travels
        as a runtime-env variable (JSON over HTTP), so no value of the step ever reaches a shell."""
        from slam.launch import validate
        from slam.launch.entry import ENTRYPOINT, SPEC_ENV

        validate.s3_uri(spec_uri, "step spec URI")
        sid, reattached = self.submit(ENTRYPOINT, submission_id, env={**(env or {}), SPEC_ENV: spec_uri},
                                      **submit_kw)
        return self.wait(sid, timeout_s=timeout_s, reattached=reattached)
