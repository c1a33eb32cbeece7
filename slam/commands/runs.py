"""`slam runs compare` — the runs of an MLflow experiment side by side, for people who live in a terminal.

    slam runs compare --tracking-uri sqlite:///runs/demo/mlflow/mlflow.db          # what `slam demo` prints
    slam runs compare --tracking-uri http://127.0.0.1:5000 --pipeline-run 3f2a…    # one pipeline run's steps
    slam runs compare --filter "tags.slam.step = 'eval'" --json

Columns: run name, step, k, layers, lr, accuracy per language and the averages (the `acc/<task>/<lang>`
metrics, in percent), the SLAM evaluation's difference to the base (Δ, points), last train/val loss —
the values the MLflow UI shows (both read the tracking server's runs/search).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import add_overrides, command, group

    _, rsub = group(sub, "runs", help="inspect tracked runs (MLflow)",
                    examples=["slam runs compare --tracking-uri sqlite:///runs/demo/mlflow/mlflow.db"])
    c = command(rsub, "compare", help="print an experiment's runs side by side (accuracy per language, base vs SLAM)",
                description=__doc__.split("\n\n", 2)[2].strip(),
                examples=["slam runs compare --tracking-uri sqlite:///runs/demo/mlflow/mlflow.db",
                          "slam runs compare --tracking-uri http://127.0.0.1:5000 --experiment slam --pipeline-run ID",
                          "slam runs compare --filter \"tags.slam.step = 'eval'\" --json"])
    c.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: tracking.uri, MLFLOW_TRACKING_URI)")
    c.add_argument("--experiment", default="", help="experiment name (default: tracking.experiment = slam)")
    c.add_argument("--pipeline-run", default="", help="only the steps of this pipeline run (its MLflow run id)")
    c.add_argument("--filter", default="", help="MLflow search filter, e.g. \"params.k = '4'\"")
    c.add_argument("--max-runs", type=int, default=100, help="at most this many runs")
    c.add_argument("--json", action="store_true", help="print the rows as JSON")
    c.add_argument("--config", default=None, help="YAML config (its tracking section is used)")
    add_overrides(c, "config overrides, e.g. tracking.experiment=slam")
    c.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    import json

    from slam.compare import compare_runs, format_table
    from slam.config import load_config

    cfg = load_config(args.config, args.overrides)
    given = {"uri": args.tracking_uri, "experiment": args.experiment}
    cfg = cfg.replace(tracking={k: v for k, v in given.items() if v})  # typed values, not override strings
    rows = compare_runs(cfg.tracking, filter_string=args.filter, max_runs=args.max_runs, pipeline_run=args.pipeline_run)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
