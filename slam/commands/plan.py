"""`slam plan --model PATH --layers 0-5 --roles up,down [--json]` — which tensors SLAM will tune.

PATH may hold only a config.json: the model is built on the meta device, so planning a 70B model
costs nothing. `--layers` also accepts a probe report (`--probe probe.json`).
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import command

    p = command(sub, "plan", help="show the tensors SLAM will train (works from config.json alone)",
                description="The model is built on the meta device, so planning a 70B model costs nothing.",
                examples=["slam plan --model configs/models/llama-2-7b --layers 0-5",
                          "slam plan --model $M --probe runs/probe/probe.json --json"])
    p.add_argument("--model", required=True, help="HF model dir (weights optional)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--layers", help="layer indices: 0-5, 0,2,4 or 0-2,7")
    g.add_argument("--probe", help="probe.json (path or URI): use its selected layers")
    p.add_argument("--roles", default="up,down", help="comma list of gate,up,down,attention,full-layer,embeddings")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (per-tensor list included)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slam.config import parse_int_list, split_list
    from slam.freeze import make_plan
    from slam.models import load_for_planning

    if args.probe:
        from slam.probe.select import read_report

        layers = read_report(args.probe)["selected_layers"]
    else:
        layers = parse_int_list(args.layers)
    roles = split_list(args.roles)
    model = load_for_planning(args.model)
    plan = make_plan(model, layers, roles)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(plan.summary())
    for note in plan.notes:
        print(f"note: {note}")
    for t in plan.tensors:
        print(f"  {t.name:60s} {str(list(t.shape)):>16s} {t.numel:>14,d}")
    return 0
