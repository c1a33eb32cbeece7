"""Side-by-side comparison of tracked runs (what `slam runs compare` prints): the same numbers the MLflow UI
shows, read from the same runs/search API.

    rows = compare_runs(cfg.tracking, pipeline_run="3f2a…")    # one dict per run, oldest first
    print(format_table(rows))

    run        step      k  layers       en    de    zh   avg  avg_non_en  Δ avg_non_en  val/loss
    eval-base  eval                    12.5   0.0   8.3   6.9         4.2
    eval-slam  eval      6  2,11,13…   20.8  25.0  12.5  19.4        18.8         +14.6

Accuracy columns come from the `acc/<task>/<lang>` metrics (percent; the task prefix is dropped when
all runs share one task), `Δ` from `delta/<task>/…` (points, on the SLAM evaluation).
"""

from __future__ import annotations

from typing import Any

from slam.config import TrackingConfig
from slam.errors import SlamError
from slam.tracking import PARENT_TAG, STEP_TAG, MlflowTracker, get_tracker

# Params shown first, in this order, when a run has them.
PARAM_COLUMNS = ("k", "layers", "selection", "lr")
LOSS_COLUMNS = ("train/loss", "val/loss")
_IDS = ("run_id", "parent_run_id")


def compare_runs(tracking: TrackingConfig, filter_string: str = "", max_runs: int = 100,
                 pipeline_run: str = "") -> list[dict[str, Any]]:
    """One row per run of `tracking.experiment` (or of one pipeline run and its steps): name, step, key
    params, accuracy per language and averages, deltas vs base, last losses."""
    tracker = get_tracker(tracking)
    if not isinstance(tracker, MlflowTracker):
        raise SlamError("slam runs compare needs an MLflow tracking URI (--tracking-uri or MLFLOW_TRACKING_URI)")
    exp = tracker._call("get experiment", tracker.client.get_experiment_by_name, tracking.experiment)
    if exp is None:
        raise SlamError(f"no MLflow experiment named {tracking.experiment!r} at {tracker.uri}")
    if pipeline_run:
        clause = f"tags.`{PARENT_TAG}` = '{pipeline_run}'"
        filter_string = f"{filter_string} and {clause}" if filter_string else clause
    runs = tracker._call("search runs", tracker.client.search_runs, [exp.experiment_id],
                         filter_string=filter_string, max_results=max_runs,
                         order_by=["attributes.start_time ASC"])
    tasks = {k.split("/")[1] for r in runs for k in r.data.metrics if k.startswith("acc/") and k.count("/") == 2}
    rows = []
    for r in runs:
        m, p = r.data.metrics, r.data.params
        row: dict[str, Any] = {"run": r.info.run_name, "step": r.data.tags.get(STEP_TAG, ""),
                               "run_id": r.info.run_id, "parent_run_id": r.data.tags.get(PARENT_TAG, "")}
        row.update({c: p[c] for c in PARAM_COLUMNS if c in p})
        if "layers" not in row and "slam.selected_layers" in r.data.tags:
            row["layers"] = r.data.tags["slam.selected_layers"]
        for key in sorted(m, key=_order):
            parts = key.split("/")
            if parts[0] in ("acc", "delta") and len(parts) == 3:
                name = parts[2] if len(tasks) == 1 else f"{parts[1]}/{parts[2]}"
                row[name if parts[0] == "acc" else f"Δ {name}"] = m[key]
        row.update({c: m[c] for c in LOSS_COLUMNS if c in m})
        row["status"] = r.info.status
        rows.append(row)
    return rows


def _order(key: str) -> tuple:
    """en first, then languages alphabetically, then averages."""
    last = key.rsplit("/", 1)[-1]
    return (key.split("/")[0] != "acc", last.startswith("avg"), last != "en", key)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table; columns are the union of the rows' keys (ids left out)."""
    if not rows:
        return "(no runs)"
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols and c not in _IDS)

    def cell(c: str, v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:+.1f}" if c.startswith("Δ") else f"{v:.3f}" if "loss" in c else f"{v:.1f}"
        s = str(v)
        return s if len(s) <= 24 else s[:23] + "…"

    table = [list(cols)] + [[cell(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    numeric = [all(row[i] == "" or _is_number(row[i]) for row in table[1:]) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(row, widths, numeric, strict=True)).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
