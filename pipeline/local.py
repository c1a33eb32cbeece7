"""Run the whole compiled DAG on this machine through kfp.local, and read its task outputs back.

    slam pipeline run --storage runs/local -p languages=en,de      # what `slam demo` does on its defaults
    run = run_local(params, "runs/kfp-local")                        # {"run_dir", "steps", "logs"}
    task_outputs(run["run_dir"])["train-slam"]["parameters"]
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from slam.errors import SlamError


def run_local(params: dict[str, Any], pipeline_root: str | os.PathLike, opts: Any = None, *,
              log_dir: str | os.PathLike | None = None, verbose: bool | None = None) -> dict[str, Any]:
    """Run the whole DAG here with kfp.local (SubprocessRunner, current env) behind the quiet console
    (pipeline.console; logs under `log_dir`, default <pipeline_root>/logs); returns the run dir and the
    per-step times, read back from the local pipeline root."""
    from kfp import local

    from pipeline.console import QuietConsole
    from pipeline.pipeline import CompileOptions, build_pipeline

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    verbose = bool(os.environ.get("SLAM_VERBOSE")) if verbose is None else verbose
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline_fn = build_pipeline(opts or CompileOptions(s3_secret=""))
    before = {p.name for p in root.iterdir()}
    console = QuietConsole(log_dir or root / "logs", verbose=verbose)
    with warnings.catch_warnings(), console:
        # the project image name has no "python" in it, and cluster-only settings are ignored locally
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            pipeline_fn(**params)
        except RuntimeError as e:
            raise SlamError(f"the pipeline failed: {str(e).splitlines()[0][:300]} (logs: {console.dir})") from None
    new = sorted(p for p in root.iterdir() if p.name not in before and p.is_dir())
    run_dir = new[-1] if new else root
    return {"run_dir": str(run_dir), "steps": step_times(run_dir), "logs": str(console.dir)}


def step_times(run_dir: str | os.PathLike) -> dict[str, float]:
    """Compute seconds per task, as each step measured itself (`seconds` in its artifacts' metadata)."""
    out: dict[str, float] = {}
    for f in sorted(Path(run_dir).glob("*/executor_output.json")):
        arts = json.loads(f.read_text()).get("artifacts", {})
        secs = [a.get("metadata", {}).get("seconds") for v in arts.values() for a in v.get("artifacts", [])]
        secs = [s for s in secs if isinstance(s, (int, float))]
        if secs:
            out[f.parent.name] = round(max(secs), 1)
    return out


def task_outputs(run_dir: str | os.PathLike) -> dict[str, dict]:
    """task -> {"artifacts": {name: metadata}, "parameters": {name: value}} from kfp.local's output dir."""
    out: dict[str, dict] = {}
    for f in sorted(Path(run_dir).glob("*/executor_output.json")):
        doc = json.loads(f.read_text())
        arts = {name: (v.get("artifacts") or [{}])[0].get("metadata", {})
                for name, v in doc.get("artifacts", {}).items()}
        out[f.parent.name] = {"artifacts": arts, "parameters": doc.get("parameterValues", {})}
    return out

