"""The `slam` command line: one subcommand per pipeline step.

    slam --help
    slam plan --model configs/models/llama-2-7b --layers 0-5
    python -m slam <step> --help

Each subcommand lives in `slam/commands/<name>.py` with `register(subparsers)`; heavy imports
(torch, transformers, ray, mlflow) happen inside the command so `slam --help` stays fast. Packages
installed alongside add subcommands through the `slam.commands` entry-point group (the project's
`pipeline` package adds `slam pipeline` and `slam demo` that way): the library never imports them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from slam.commands import (
    data,
    evaluate,
    launch,
    merge,
    models,
    plan,
    probe,
    register,
    runs,
    study,
    train,
    tune,
)
from slam.errors import SlamError

# Order = order in `slam --help`. A module is listed only once its step exists (no stubs).
COMMANDS = [models, plan, data, probe, train, merge, evaluate, tune, register, runs, launch, study]
PLUGIN_GROUP = "slam.commands"


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too (`slam <step> --help` shows the usage)."""

    def error(self, message: str):  # type: ignore[override]
        from slam.redact import redact

        self.exit(2, f"{self.prog}: error: {redact(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slam",
        description="SLAM: find a model's language layers and tune only their FFNs, on Ray/Kubeflow or a laptop.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="<step>", required=True)
    for module in COMMANDS:
        module.register(sub)
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from slam.env import apply_defaults, check_credentials
    from slam.redact import install_log_filter, redact

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    install_log_filter()
    try:
        apply_defaults()
        check_credentials()
        return int(args.func(args) or 0)
    except SlamError as e:
        if args.debug:
            raise
        print(f"slam: error: {redact(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("slam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
