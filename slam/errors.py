"""User-facing errors.

A `SlamError` is bad input or an unusable environment: the CLI prints its message as one line and
exits 2 (no traceback unless `--debug`). Anything else is a bug and keeps its traceback.
"""


class SlamError(Exception):
    """Bad input: the message names the problem and, where possible, the fix."""

    exit_code = 2

    def __str__(self) -> str:
        # One line, always: multi-problem messages are joined with "; " by their producers.
        return " ".join(super().__str__().split("\n"))


class ConfigError(SlamError):
    """A config file or override is invalid (all problems listed in one message)."""
