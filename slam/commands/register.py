"""`slam register` — register a SLAM delta in MLflow as a model version and gate `champion` per language.

    slam register --delta runs/train/delta --eval runs/eval/eval.json --base-eval runs/eval-base/eval.json \\
        --name slam-smollm2 tracking.uri=http://127.0.0.1:5000
    slam register --delta s3://bucket/run/delta --eval s3://bucket/run/eval/eval.json --merged tracking.gate_margin=2

The version is an MLflow 3 logged model (pyfunc: base + delta, signature question -> answer), its source
run the training run of the delta. The alias `champion` moves only if no language drops more than
tracking.gate_margin points against the champion, every new language beats the base (--base-eval), and
the version brings a new language or a higher non-English average; otherwise it is `challenger`. The
per-language table is written to the version. Registering the same delta again creates no second
version. Prints the decision, then the result as JSON.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import add_overrides, command

    p = command(sub, "register", help="register a SLAM delta in the MLflow model registry (per-language champion gate)",
                description=__doc__.split("\n\n", 2)[2].strip(),
                examples=["slam register --delta runs/train/delta --eval runs/eval/eval.json --base-eval "
                          "runs/base/eval.json tracking.uri=sqlite:///runs/mlflow.db",
                          "slam register --delta s3://b/run/delta --eval s3://b/eval/eval.json tracking.gate_margin=2"])
    p.add_argument("--delta", required=True, help="delta dir (path or s3:// URI) from `slam train`")
    p.add_argument("--eval", required=True, dest="eval_uri", help="eval.json (path or URI) of the delta, `slam evaluate`")
    p.add_argument("--base-eval", default="", help="eval.json of the base model on the same questions (new languages "
                                                   "must beat it)")
    p.add_argument("--name", default="", help="registered model name (default: tracking.registry_name)")
    p.add_argument("--base", default="", help="base model path/URI (default: the one in the delta's manifest)")
    p.add_argument("--merged", action="store_true", help="also log the merged model (transformers flavor)")
    p.add_argument("--config", default=None, help="YAML config (its tracking section is used)")
    add_overrides(p, "config overrides, e.g. tracking.uri=http://mlflow:5000 tracking.gate_margin=2")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from slam.config import load_config
    from slam.registry import register_delta

    cfg = load_config(args.config, args.overrides)
    result = register_delta(cfg.tracking, args.delta, args.eval_uri, base_eval_uri=args.base_eval, name=args.name,
                            base=args.base, merged=args.merged)
    print(result.reason)
    if result.table:
        print(result.table)
    print(json.dumps(result.to_dict(), indent=2))
    return 0
