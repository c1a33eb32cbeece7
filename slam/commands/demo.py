"""`slam demo [--quick] [--out runs/demo] [--storage s3://bucket/demo]` — the whole pipeline, here.

Runs the compiled Kubeflow pipeline through kfp.local on the embedded defaults (SmolLM2-135M-Instruct,
the synthetic multilingual world, local Ray, local MLflow) and prints base vs SLAM per language, the
selected layers, the registered model version/alias and the `mlflow ui` command. See slam/demo.py.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole Kubeflow pipeline locally on the embedded defaults")
    p.add_argument("--quick", action="store_true", help="reduced run (fewer languages/steps/questions; what CI runs)")
    p.add_argument("--out", default="runs/demo", help="output dir: storage, kfp task outputs, MLflow (default runs/demo)")
    p.add_argument("--storage", default="", help="artifact storage instead of <out>/storage (e.g. s3://bucket/demo)")
    p.add_argument("--mlflow-uri", default="", help="MLflow tracking URI (default: sqlite under <out>/mlflow)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="override a pipeline parameter (see `slam pipeline params`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slam.demo import run_demo
    from slam.errors import SlamError

    params = {}
    for item in args.param or []:
        if "=" not in item:
            raise SlamError(f"--param {item!r}: expected name=value")
        k, v = item.split("=", 1)
        params[k.strip().replace("-", "_")] = v
    run_demo(args.out, quick=args.quick, storage=args.storage, mlflow_uri=args.mlflow_uri, params=params)
    return 0
