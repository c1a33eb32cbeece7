"""`slam runs compare` — the runs of an MLflow experiment side by side, for people who live in a terminal.

    slam runs compare --experiment slam --tracking-uri http://127.0.0.1:5000
    slam runs compare --experiment slam --filter "tags.slam.step = 'tune-trial'" --json

Columns: run name, k, layers, lr, per-language accuracy (acc_<lang>), average, val loss — the same
values the MLflow UI shows (both read the tracking server's runs/search).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="inspect tracked runs (MLflow)")
    rsub = p.add_subparsers(dest="runs_command", metavar="<action>", required=True)
    c = rsub.add_parser("compare", help="print an experiment's runs side by side (k, layers, accuracy)")
    c.add_argument("--experiment", default="", help="experiment name (default: tracking.experiment = slam)")
    c.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    c.add_argument("--filter", default="", help="MLflow search filter, e.g. \"params.k = '4'\"")
    c.add_argument("--max-runs", type=int, default=100, help="at most this many runs (newest first)")
    c.add_argument("--json", action="store_true", help="print the rows as JSON")
    c.add_argument("--config", default=None, help="YAML config (its tracking section is used)")
    c.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    import json

    from slam.compare import compare_runs, format_table
    from slam.config import load_config

    cfg = load_config(args.config)
    given = {"uri": args.tracking_uri, "experiment": args.experiment}
    cfg = cfg.replace(tracking={k: v for k, v in given.items() if v})  # typed values, not override strings
    rows = compare_runs(cfg.tracking, filter_string=args.filter, max_runs=args.max_runs)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
