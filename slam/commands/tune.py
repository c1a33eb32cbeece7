"""`slam tune` — Ray Tune over k (how many probe-ranked layers to tune), lr and selection mode.

    slam tune --config configs/tune-smollm2.yaml tune.k_grid=[2,4,6] tune.max_steps=20
    slam tune --config CFG --storage s3://bucket/runs --ray-address auto     # on a (KubeRay) cluster

Needs train.probe (a probe.json) and data.train. Each trial is a reduced-budget SLAM training run
(tune.max_steps); ASHA stops weak trials early on val_loss. Writes best.json, results.csv/json and
tune.png (metric vs k) under --out (default <storage>/<search name>-result); re-running the same
search resumes it. With a tracking URI, MLflow gets one `tune` run with the trials nested under it.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import add_overrides, command

    p = command(sub, "tune", help="Ray Tune search over the layer count k (+ lr, selection)",
                description="Each trial is a reduced-budget SLAM training run (tune.max_steps); ASHA stops weak "
                            "trials early on val_loss. Needs train.probe (a probe.json) and data.train. Writes "
                            "best.json, results.csv/json and tune.png; re-running the same search resumes it.",
                examples=["slam tune --config configs/tune-smollm2.yaml model.path=$M tune.k_grid=[2,4,6]",
                          "slam tune --config c.yaml --storage s3://bucket/runs --ray-address auto tune.max_steps=20"])
    p.add_argument("--config", default=None, help="YAML config (sections: model, data, train, tune, tracking)")
    p.add_argument("--storage", default=None, help="Ray storage root, local or s3:// (default: storage.root)")
    p.add_argument("--out", default=None, help="where best.json/results/plot go (default: <storage>/<name>-result)")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per trial")
    p.add_argument("--ray-address", default=None, help="existing Ray cluster (default: start Ray locally)")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from slam.config import load_config
    from slam.errors import SlamError

    if args.num_workers < 1:
        raise SlamError(f"--num-workers must be >= 1, got {args.num_workers}")
    cfg = load_config(args.config, args.overrides)
    from slam.compare import format_table
    from slam.distributed.tune import RESULT_COLUMNS, tune_search

    outcome = tune_search(cfg, storage_root=args.storage, ray_address=args.ray_address,
                          num_workers=args.num_workers, out_uri=args.out)
    cols = [c for c in RESULT_COLUMNS if c not in ("run_dir",)]
    print(format_table([{c: r.get(c) for c in cols} for r in outcome.rows]))
    print(f"best: {json.dumps({k: outcome.best[k] for k in ('k', 'layers', 'lr', 'selection', 'metric', 'value')})}")
    print(f"results: {outcome.out_uri}")
    return 0
