"""Shared plumbing of the peer benches (bench/vs_llamafactory.py, bench/vs_lm_eval.py); not run on its own.

- `ensure_venv`: a virtualenv of the peer tool, created on first use next to the repo (`.cache/bench-venvs/`,
  git-ignored), never slam's own `.venv`. Torch is pinned to the CPU build that lies on this machine's
  disk (`pip install torch==2.13.0`), installed *before* the peer, so the peer's own `torch>=...`
  requirement is already met and pip never pulls a multi-GB CUDA build; both tools then run on the same
  torch kernels and only the tool differs.
- `run_measured`: run a command (argument list, no shell) and return wall time, CPU time (user+sys, from
  os.wait4 rusage: on a shared box it moves far less with other people's load than wall time), exit status,
  peak RSS of the process (rusage: the max over the process and the children it waited for) and the peak
  summed RSS of the whole process tree (psutil, sampled every 0.1 s).
- `machine_line`: load averages, cores and the `uptime` line, printed with every result: the box is shared.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The slam of the repo this bench lives in, even when the venv's editable install points at another checkout
# (a git worktree): first on this process's path and on the path of every slam child process.
sys.path.insert(0, str(REPO))
SLAM_ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "MLFLOW_TRACKING_URI": ""}
VENVS = REPO / ".cache" / "bench-venvs"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def pip(venv: Path, *args: str) -> None:
    cmd = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *args]
    log("  " + " ".join(cmd[3:]))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def versions(venv: Path, names: list[str]) -> dict[str, str | None]:
    code = ("import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\nout = {}\n"
            "for n in sys.argv[1:]:\n    try: out[n] = version(n)\n    except PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))")
    r = subprocess.run([str(venv_python(venv)), "-c", code, *names], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def ensure_venv(venv: Path, install, names: list[str]) -> dict[str, str | None]:
    """Create `venv` and run `install(venv)` unless a previous run finished it (marker file); return versions."""
    marker = venv / "slam-bench-ready.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    if venv.exists():
        shutil.rmtree(venv)  # a half-made venv from an interrupted run
    log(f"creating {venv} (first run only; a few minutes)")
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip(venv, "--upgrade", "pip")
    install(venv)
    v = versions(venv, names)
    marker.write_text(json.dumps(v, indent=1))
    return v


def machine_line() -> str:
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if shutil.which("uptime") else ""
    la = os.getloadavg()
    return (f"load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} cores "
            f"({platform.machine()}, Python {platform.python_version()}); uptime: {up}")


def run_measured(cmd: list[str], *, log_file: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> dict:
    """Run cmd (stdout+stderr to log_file); wall seconds, return code, peak RSS (MiB) of the process and tree."""
    import psutil

    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with open(log_file, "w") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        peak_tree = [0]
        stop = threading.Event()

        def sample() -> None:
            try:
                root = psutil.Process(p.pid)
            except psutil.Error:
                return
            while not stop.is_set():
                try:
                    total = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
                    peak_tree[0] = max(peak_tree[0], total)
                except psutil.Error:
                    pass
                stop.wait(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
        p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024,
            "peak_tree_rss_mb": peak_tree[0] / 2**20, "load_before": load_before, "load_after": os.getloadavg(),
            "log": str(log_file)}


def tail(path: str | Path, n: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def dir_mb(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20 if p.exists() else 0.0


def slam_cmd(*args: str) -> list[str]:
    """`python -m slam ...` with the interpreter running this bench (slam's own venv)."""
    return [sys.executable, "-m", "slam", *args]


def smollm2_dir() -> str:
    r = subprocess.run(slam_cmd("models", "import", "smollm2"), check=True, capture_output=True, text=True,
                       env={**os.environ, **OFFLINE_ENV, **SLAM_ENV})
    return r.stdout.strip().splitlines()[-1]


def shared_data() -> Path:
    """$SLAM_SHARED_DATA, else the `shared/data` folder next to this checkout, or next to the main checkout when
    this one is a git worktree (its common git dir names the main checkout)."""
    if os.environ.get("SLAM_SHARED_DATA"):
        return Path(os.environ["SLAM_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data"]
    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                       capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        candidates.append(Path(r.stdout.strip()).parent.parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), candidates[0])


def stop_strings() -> list[str]:
    """slam's stop strings for the Alpaca template (slam.generation after the restructure, slam.evaluate before)."""
    try:
        from slam.generation import STOP_STRINGS
    except ImportError:
        from slam.evaluate import STOP_STRINGS
    return list(STOP_STRINGS["alpaca"])


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def fmt(x, spec: str = ",.3f") -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return format(x, spec)
