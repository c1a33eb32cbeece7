"""The `slam` subcommands, one module each with `register(subparsers)`; every parser is built here, one way:
a description, examples, defaults shown, and one override syntax, `section.key=value`, repeatable.

    p = command(sub, "train", help="…", description="…", examples=["slam train --config c.yaml train.lr=1e-4"])
    add_overrides(p)                       # positional SECTION.KEY=VALUE ... (config overrides)
    g, gsub = group(sub, "data", help="…") # a command with actions; bare `slam data` prints its help
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; an argument's default shown when it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "%(default)" in text or "default" in text or d in (None, False, "", [], argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            return f"{text} (default: %(default)s)"
        return text


def command(sub: argparse._SubParsersAction, name: str, *, help: str, description: str = "",
            examples: Sequence[str] = ()) -> argparse.ArgumentParser:
    epilog = ("examples:\n" + "\n".join(f"  {e}" for e in examples)) if examples else None
    p = sub.add_parser(name, help=help, description=description or help, epilog=epilog, formatter_class=HelpFormatter)
    # the global flags also work after the subcommand (`slam demo --quick -v`); SUPPRESS keeps `slam -v demo` too
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show everything steps print (Ray/Tune status, executor dumps, library warnings)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
    return p


def group(sub: argparse._SubParsersAction, name: str, *, help: str, description: str = "",
          examples: Sequence[str] = (), metavar: str = "<action>") -> tuple[argparse.ArgumentParser,
                                                                           argparse._SubParsersAction]:
    """A command with actions (`slam data synth`); run bare, it prints its own help."""
    p = command(sub, name, help=help, description=description, examples=examples)
    actions = p.add_subparsers(dest=f"{name}_command", metavar=metavar)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    return p, actions


def add_overrides(p: argparse.ArgumentParser, what: str = "config overrides, e.g. train.lr=1e-4 tune.k_grid=[2,4]") -> None:
    p.add_argument("overrides", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help=f"{what} (repeatable)")
