"""The `slam` command line: one subcommand per pipeline step.

    slam --help
    slam plan --model configs/models/llama-2-7b --layers 0-5
    python -m slam <step> --help

Each subcommand lives in `slam/commands/<name>.py` with `register(subparsers)`; heavy imports
(torch, transformers, ray, mlflow) happen inside the command so `slam --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from slam.errors import SlamError

# Order = order in `slam --help`. A module is listed only once its step exists (no stubs).
COMMAND_MODULES = [
    "slam.commands.models",
    "slam.commands.plan",
    "slam.commands.data",
    "slam.commands.probe",
    "slam.commands.train",
    "slam.commands.merge",
    "slam.commands.evaluate",
    "slam.commands.tune",
    "slam.commands.register",
    "slam.commands.runs",
    "slam.commands.pipeline",
    "slam.commands.demo",
    "slam.commands.launch",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slam",
        description="SLAM: find a model's language layers and tune only their FFNs, on Ray/Kubeflow or a laptop.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="<step>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # we never download models at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except SlamError as e:
        if args.debug:
            raise
        print(f"slam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("slam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
