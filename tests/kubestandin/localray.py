"""A real local Ray cluster for tests: `ray start --head` (+ optional worker nodes) on 127.0.0.1 only,
each node with its own temp dir and resources, token authentication ON (Ray 2.60's default).

    with LocalRayCluster(workers=2) as ray_cluster:          # or .start() / .stop()
        client = ray_cluster.job_client()                    # JobSubmissionClient with the bearer token
        ray_cluster.env()                                    # env for a process that must reach it
    LocalRayCluster(workers=2, head_cpus=0, python=img.python, base_env=img.env(home), wrap=sandbox_cmd)
        # the cluster path: nodes run "the image" (its python, its env only), inside the pods' sandbox

Token auth: a fresh 256-bit token (what `ray get-auth-token --generate` makes) is written to
`<base>/auth_token` (0600) and every node starts with `RAY_AUTH_MODE=token` and
`RAY_AUTH_TOKEN_PATH=<that file>`; the user's `~/.ray/auth_token` is never read or written. Clients
pass it either as `Authorization: Bearer <token>` (what `JobSubmissionClient` sends when
`RAY_AUTH_MODE=token` and a token is found via `RAY_AUTH_TOKEN`/`RAY_AUTH_TOKEN_PATH`/`~/.ray/auth_token`,
or explicitly via `headers=`) or, for `ray.init`, through the same two env vars (`env()`).
Requests without the token get 401, with a wrong one 403 (checked in the tests).

Loopback only: `ray start --node-ip-address=127.0.0.1` alone is not enough - Ray turns 127.0.0.1
into the host's outward address (`services.resolve_ip_for_localhost`). The nodes therefore run
with `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, which makes Ray's own address lookup answer 127.0.0.1
for the node and every process it starts (drivers of Ray jobs included); worker nodes are started
through a small wrapper around Ray's CLI that lets them join a multi-node cluster anyway (Ray only
refuses that for Windows/macOS). Every listening socket is on 127.0.0.1 (checked in the tests).
The dashboard binds 127.0.0.1 (`--dashboard-host`).

Stopping: SIGTERM to each `ray start --block` process (which stops its node), then SIGKILL to any
process of the recorded trees still alive after a grace period. Never `ray stop` (it would kill
every Ray on the machine, including other sessions').
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .apiserver import free_port

# Every node: pin Ray's address lookup to loopback, allow multi-node with the env var set, and let a node
# whose raylet waits for a slow dashboard agent (a busy 2-core box) register instead of dying after 30 s.
_NODE_WRAPPER = """
import sys, time
import ray._private.ray_constants as rc
import ray._private.services as sv
rc.ENABLE_RAY_CLUSTER = True
sv.node_ip_address_from_perspective = lambda address=None: "127.0.0.1"
_get_node = sv.get_node
def _patient_get_node(*a, **kw):  # `ray start` gives its raylet 30 s (hard-coded) to register: 4 min here
    deadline = time.monotonic() + 240
    while True:
        try:
            return _get_node(*a, **kw)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
sv.get_node = _patient_get_node
from ray.scripts.scripts import main
sys.argv[0] = "ray"
main()
"""


class LocalRayCluster:
    def __init__(self, *, workers: int = 0, head_cpus: float = 2, worker_cpus: float = 1,
                 head_resources: dict[str, float] | None = None, worker_resources: list[dict[str, float]] | None = None,
                 object_store_mb: int = 100, env: dict[str, str] | None = None, base_dir: str | None = None,
                 keep_dir: bool = False, python: str | os.PathLike | None = None,
                 base_env: dict[str, str] | None = None, wrap: list[str] | None = None,
                 boot_nice: int | None = None):
        self.workers = workers
        self.python = str(python or sys.executable)
        self.base_env = dict(base_env) if base_env is not None else None  # None: this process's environment
        self.wrap = list(wrap or [])  # a command prefix for every node (e.g. the pods' filesystem sandbox)
        # Ray 2.60's raylet gives its dashboard agent a hard-coded 15 s to start; on a box loaded 10x over
        # that import alone takes longer. boot_nice (e.g. -15, root only) raises the nodes' priority while
        # they boot; start() sets every node process back to nice 0 once the cluster is up.
        self.boot_nice = boot_nice
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.head_resources = {"standin_head": 1, **(head_resources or {})}
        self.worker_resources = worker_resources or [{"standin_worker": 1, f"standin_worker_{i}": 1} for i in range(workers)]
        self.object_store_mb = object_store_mb
        self.extra_env = dict(env or {})
        # short base path: Ray's unix sockets live under it (108-byte AF_UNIX limit)
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="ksr", dir="/tmp"))
        self.keep_dir = keep_dir
        self.token = secrets.token_hex(32)
        self.token_path = self.base / "auth_token"
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.procs: list[subprocess.Popen] = []
        self._tree: dict[int, float] = {}  # pid -> create_time
        self.start_errors: list[str] = []  # failed start attempts (retried)

    # -- addresses and credentials
    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_address(self) -> str:
        """host:port, the way KubeRay writes status.dashboardURL."""
        return f"127.0.0.1:{self.dashboard_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.dashboard_address}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        """Env for a process that talks to this cluster (Ray job client, `ray.init`)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                "RAY_ADDRESS": self.dashboard_url, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

    def job_client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url, headers=self.auth_headers())

    # -- lifecycle
    def _node_env(self) -> dict[str, str]:
        source = os.environ if self.base_env is None else self.base_env
        env = {k: v for k, v in source.items()
               if not k.startswith(("RAY_AUTH", "RAY_ADDRESS")) and k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        bindir = str(Path(self.python).parent)
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                    "PATH": bindir + os.pathsep + env.get("PATH", "")})
        # a raylet gives its dashboard agent 10 s to come up by default: too little on a busy 2-core box
        env.setdefault("RAY_agent_register_timeout_ms", "90000")
        env.update(self.extra_env)
        return env

    def _ports(self) -> list[str]:
        return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--object-store-memory={self.object_store_mb * 1024 * 1024}", "--disable-usage-stats"]

    def start(self, timeout: float = 180.0, attempts: int = 3) -> LocalRayCluster:
        """Start the nodes; on a failure (a port taken between picking and binding, a node that timed out
        registering on a busy box) everything started is killed and it tries again with new ports."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        deadline = time.monotonic() + timeout
        for attempt in range(attempts):
            try:
                self._start_once(deadline)
                self._renice(0)
                return self
            except Exception as e:
                self._kill()
                if attempt + 1 == attempts or time.monotonic() > deadline:
                    if not self.keep_dir:
                        shutil.rmtree(self.base, ignore_errors=True)
                    raise
                self.start_errors.append(repr(e))
                self.gcs_port, self.dashboard_port = free_port(), free_port()
        return self

    def _start_once(self, deadline: float) -> None:
        env = self._node_env()
        head = [*self.wrap, self.python, "-c", _NODE_WRAPPER, "start", "--head", "--block",
                "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}",
                f"--num-cpus={self.head_cpus}", f"--resources={json.dumps(self.head_resources)}",
                "--include-dashboard=true", f"--temp-dir={self.base / 'head'}", *self._ports()]
        self._spawn(head, env, "head")
        self._wait_dashboard(deadline)
        # the dashboard answers before the head's raylet registers; on a busy box `ray start` gives up on
        # that after 30 s and the head exits: only an ALIVE head node counts as started
        self._wait_nodes(1, deadline)
        self._renice(0)  # a booted node stops competing with the next one's boot
        for i in range(self.workers):  # one at a time: two nodes booting at once starve each other on 2 cores
            self._spawn(self._worker_cmd(i), env, f"worker{i}")
            self._wait_nodes(2 + i, deadline)
            self._renice(0)

    def _worker_cmd(self, i: int) -> list[str]:
        return [*self.wrap, self.python, "-c", _NODE_WRAPPER, "start", "--block", f"--address={self.gcs_address}",
                f"--num-cpus={self.worker_cpus}", f"--resources={json.dumps(self.worker_resources[i])}",
                f"--temp-dir={self.base / f'worker{i}'}", *self._ports()]

    def _renice(self, value: int) -> None:
        import psutil

        if self.boot_nice is None:
            return
        self._collect_tree()
        for pid in self.alive_pids():
            try:
                psutil.Process(pid).nice(value)
            except psutil.Error:
                pass

    def _spawn(self, cmd: list[str], env: dict[str, str], name: str) -> None:
        if self.boot_nice is not None and shutil.which("nice"):
            cmd = [shutil.which("nice") or "nice", "-n", str(self.boot_nice), *cmd]
        if self.base_env is not None and env.get("HOME"):  # "pods": each node its own HOME (model cache, …)
            env = {**env, "HOME": str(Path(env["HOME"]) / name)}
            Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=str(self.base))
        log.close()
        self.procs.append(p)

    def _wait_dashboard(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"ray head exited ({self.procs[0].returncode}): {self.log_tail('head')}")
            try:
                req = urllib.request.Request(self.dashboard_url + "/api/version", headers=self.auth_headers())
                with urllib.request.urlopen(req, timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        else:
            raise TimeoutError(f"ray dashboard not up at {self.dashboard_url}: {self.log_tail('head')}")
        # the job API needs the head's job agent; one list call proves it answers
        while time.monotonic() < deadline:
            try:
                self.job_client().list_jobs()
                return
            except Exception:
                time.sleep(0.3)
        raise TimeoutError("ray job API not ready")

    def nodes(self) -> list[dict[str, Any]]:
        req = urllib.request.Request(self.dashboard_url + "/nodes?view=summary", headers=self.auth_headers())
        with urllib.request.urlopen(req, timeout=5) as r:
            data = json.loads(r.read())
        return [n for n in data["data"]["summary"] if n.get("raylet", {}).get("state") == "ALIVE"]

    def _wait_nodes(self, n: int, deadline: float) -> None:
        restarts = 0
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"ray head exited ({self.procs[0].returncode}): {self.log_tail('head')}")
            for i, p in enumerate(self.procs[1:], start=1):
                if p.poll() is not None:
                    # on a busy box `ray start` can time out registering with the GCS: one more try each
                    if restarts >= self.workers:
                        raise RuntimeError(f"ray worker{i - 1} exited: {self.log_tail(f'worker{i - 1}')}")
                    restarts += 1
                    self.procs.pop(i)
                    self._spawn(self._worker_cmd(i - 1), self._node_env(), f"worker{i - 1}")
                    self.procs.insert(i, self.procs.pop())
                    break
            try:
                if len(self.nodes()) >= n:
                    return
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"only {len(self.nodes())} of {n} ray nodes joined")

    def log_tail(self, name: str, n: int = 30) -> str:
        try:
            return "\n".join((self.base / f"{name}.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _collect_tree(self) -> None:
        import psutil

        for p in self.procs:
            try:
                root = psutil.Process(p.pid)
                for q in [root, *root.children(recursive=True)]:
                    self._tree[q.pid] = q.create_time()
            except psutil.NoSuchProcess:
                pass
        base = str(self.base)
        for q in psutil.process_iter(["pid", "cmdline", "create_time"]):
            try:
                if any(base in a for a in q.info["cmdline"] or []):
                    self._tree[q.pid] = q.info["create_time"]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    def alive_pids(self) -> list[int]:
        import psutil

        out = []
        for pid, ct in self._tree.items():
            try:
                q = psutil.Process(pid)
                if abs(q.create_time() - ct) < 1e-3 and q.status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self, grace_s: float = 15.0) -> None:
        self._kill(grace_s)
        if not self.keep_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill(self, grace_s: float = 15.0) -> None:
        self._collect_tree()
        for p in reversed(self.procs):  # workers first, head last
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        while self.alive_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.alive_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
