"""`slam merge --base PATH --delta URI --out DIR` — base model + SLAM delta -> a full Hugging Face model dir.

    slam merge --base ~/.cache/slam/models/smollm2-135m-instruct --delta runs/slam-slam-abc/delta --out out/merged

A delta trained on another base (different config or weights) is refused with a one-line error.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import command

    p = command(sub, "merge", help="materialize base + SLAM delta as a full Hugging Face model",
                description="A delta trained on another base (different config or weights) is refused.",
                examples=["slam merge --base ~/.cache/slam/models/smollm2-135m-instruct --delta runs/x/delta "
                          "--out out/merged"])
    p.add_argument("--base", required=True, help="the base model dir the delta was trained on")
    p.add_argument("--delta", required=True, help="delta dir (local or s3://), e.g. <run>/delta")
    p.add_argument("--out", required=True, help="output model dir (local or s3://); written atomically")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slam import storage
    from slam.delta import merge

    storage.check_output(args.out)  # before loading two models
    print(merge(args.base, args.delta, args.out))
    return 0
