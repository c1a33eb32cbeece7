"""`slam register` — log a SLAM delta to MLflow, register a version, apply the champion gate.

    slam register --delta runs/train/delta --eval runs/eval/eval.json --name slam-smollm2 \\
        --tracking-uri http://127.0.0.1:5000
    slam register --delta s3://bucket/run/delta --eval s3://bucket/run/eval/eval.json --base /models/base --merged

The alias `champion` moves only if average non-English accuracy beats the champion's and English drops
at most --english-tolerance points; otherwise the version is `challenger` and the reason is printed.
Registering the same delta again creates no second version. Prints the result as JSON.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="register a SLAM delta in the MLflow model registry (champion gate)")
    p.add_argument("--delta", required=True, help="delta dir (path or s3:// URI) from `slam train`")
    p.add_argument("--eval", required=True, dest="eval_uri", help="eval.json (path or URI) from `slam evaluate`")
    p.add_argument("--name", default="", help="registered model name (default: tracking.registry_name)")
    p.add_argument("--base", default="", help="base model path/URI (default: the one in the delta's manifest)")
    p.add_argument("--merged", action="store_true", help="also log the merged model (transformers flavor)")
    p.add_argument("--config", default=None, help="YAML config (its tracking section is used)")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: config, MLFLOW_TRACKING_URI)")
    p.add_argument("--english-tolerance", type=float, default=None,
                   help="points English may drop vs the champion (default: tracking.english_tolerance = 1)")
    p.add_argument("--parent-run-id", default=None, help="MLflow parent run (the pipeline run) to nest under")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override, repeatable")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from slam.config import load_config
    from slam.registry import register_delta

    cfg = load_config(args.config, args.overrides)
    given = {"uri": args.tracking_uri or None, "english_tolerance": args.english_tolerance}
    cfg = cfg.replace(tracking={k: v for k, v in given.items() if v is not None})
    result = register_delta(cfg.tracking, args.delta, args.eval_uri, name=args.name, base=args.base,
                            merged=args.merged, parent_run_id=args.parent_run_id)
    print(result.reason)
    print(json.dumps(result.to_dict(), indent=2))
    return 0
