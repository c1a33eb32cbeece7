"""Side-by-side comparison of tracked runs (what `slam runs compare` prints).

    rows = compare_runs(cfg.tracking)                   # list of dicts, one per run, oldest first
    print(format_table(rows))
"""

from __future__ import annotations

from typing import Any

from slam.config import TrackingConfig
from slam.errors import SlamError
from slam.tracking import PARENT_TAG, MlflowTracker, get_tracker

# Params shown first, in this order, when a run has them.
PARAM_COLUMNS = ("k", "layers", "selection", "lr", "steps")
METRIC_COLUMNS = ("average", "average_non_en", "english", "val_loss", "train_loss")


def compare_runs(tracking: TrackingConfig, filter_string: str = "", max_runs: int = 100) -> list[dict[str, Any]]:
    """One row per run of `tracking.experiment`: name, ids, key params, acc_<lang> and summary metrics."""
    tracker = get_tracker(tracking)
    if not isinstance(tracker, MlflowTracker):
        raise SlamError("slam runs compare needs an MLflow tracking URI (--tracking-uri or MLFLOW_TRACKING_URI)")
    exp = tracker._call("get experiment", tracker.client.get_experiment_by_name, tracking.experiment)
    if exp is None:
        raise SlamError(f"no MLflow experiment named {tracking.experiment!r} at {tracker.uri}")
    runs = tracker._call("search runs", tracker.client.search_runs, [exp.experiment_id],
                         filter_string=filter_string, max_results=max_runs,
                         order_by=["attributes.start_time ASC"])
    rows = []
    for r in runs:
        row: dict[str, Any] = {"run": r.info.run_name, "run_id": r.info.run_id,
                               "parent_run_id": r.data.tags.get(PARENT_TAG, ""), "status": r.info.status}
        row.update({p: r.data.params[p] for p in PARAM_COLUMNS if p in r.data.params})
        row.update({m: r.data.metrics[m] for m in sorted(r.data.metrics) if m.startswith("acc_")})
        row.update({m: r.data.metrics[m] for m in METRIC_COLUMNS if m in r.data.metrics})
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table; columns are the union of the rows' keys (ids left out)."""
    if not rows:
        return "(no runs)"
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols and c not in ("run_id", "parent_run_id"))

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    table = [[c for c in cols]] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
