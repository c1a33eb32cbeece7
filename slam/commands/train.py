"""`slam train --config CFG [--num-workers N] [--storage URI] [--ray-address ADDR] [--no-ray] [SECTION.KEY=VALUE ...]`

    slam train --config configs/smollm2-demo.yaml                       # local Ray, cfg.train.num_workers workers
    slam train --config configs/smollm2-demo.yaml --no-ray train.engine=torch   # one process, no Ray: debugging
    slam train --config configs/metamath-7b.yaml --ray-address auto --storage s3://bucket/runs

Prints the delta URI (the shippable artifact) on the last line; metrics as JSON before it.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import add_overrides, command

    p = command(sub, "train", help="fine-tune the selected layers' FFNs (SLAM) or a baseline, on Ray or in-process",
                description="Train on Ray Train (+ DeepSpeed) with local workers, an existing Ray cluster, or in "
                            "this process. Prints the final metrics as JSON, then the delta URI (the shippable "
                            "artifact). MLflow (tracking.uri or MLFLOW_TRACKING_URI) gets live loss, lr, grad norm "
                            "and tokens/s; an MLflow outage never stops training.",
                examples=["slam train --config configs/smollm2-demo.yaml",
                          "slam train --config configs/smollm2-demo.yaml --no-ray train.engine=torch",
                          "slam train --config configs/metamath-7b.yaml --ray-address auto --storage s3://bucket/runs",
                          "slam train --config c.yaml train.lr=1e-4 train.layers=[0,1,2] tracking.uri=http://mlflow:5000"])
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--num-workers", type=int, default=None, help="Ray workers (default: train.num_workers)")
    p.add_argument("--storage", default=None, help="run storage root, local dir or s3:// (default: storage.root)")
    p.add_argument("--ray-address", default=None, help="connect to an existing Ray cluster instead of starting one")
    p.add_argument("--no-ray", action="store_true", help="run the training loop in this process without Ray")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slam.config import load_config
    from slam.errors import SlamError

    cfg = load_config(args.config, args.overrides)
    if args.no_ray and (args.ray_address or (args.num_workers or 1) > 1):
        raise SlamError("--no-ray runs one process: drop --ray-address/--num-workers, or drop --no-ray")
    if args.no_ray:
        from slam.train.local import train_local

        metrics = train_local(cfg, args.storage)
        delta = metrics["delta_uri"]
    else:
        from slam.distributed.train import fit

        result = fit(cfg, num_workers=args.num_workers, storage=args.storage, ray_address=args.ray_address)
        metrics, delta = {**result.metrics, "run_name": result.run_name}, result.delta_uri
    print(json.dumps(metrics, indent=2, default=str))
    print(delta)
    return 0
