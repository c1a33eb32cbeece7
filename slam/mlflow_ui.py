"""Where a browser finds what slam logged in MLflow: the runs table, a comparison, a model version.

    runs_url("http://127.0.0.1:5000", "1")      # .../#/experiments/1/runs?workflowType=machine_learning

MLflow 3.17's UI opens an experiment in its GenAI view (traces, all zeros for training runs) unless the URL
carries `workflowType=machine_learning`: the view comes from that query parameter or the browser's last
choice, not from the experiment's `mlflow.experimentKind` tag (read in its bundled UI source: the kind is
derived from the workflow type whenever the workflow switch is enabled, which it is in 3.17). So every
link slam prints carries it.
"""

from __future__ import annotations

import json
from urllib.parse import quote

TRAINING_VIEW = "workflowType=machine_learning"


def ui_base(uri: str, ui_url: str = "") -> str:
    """Where a browser finds the MLflow UI for this tracking URI ('' when it cannot be known)."""
    if ui_url:
        return ui_url.rstrip("/")
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    if uri.startswith("sqlite:"):
        return "http://127.0.0.1:5000"  # what `mlflow ui --backend-store-uri <uri>` serves
    return ""


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table, opened in the training view (not MLflow 3's GenAI view)."""
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    exps = quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={exps}&{TRAINING_VIEW}"


def model_version_url(base: str, name: str, version: str) -> str:
    return f"{base}/#/models/{quote(name)}/versions/{version}?{TRAINING_VIEW}"
