"""The quiet console of `slam demo` and `slam pipeline run`: what a person watching a kfp.local run sees.

    with QuietConsole(log_dir="runs/demo/logs", verbose=False):
        kfp_pipeline(**params)          # kfp.local prints every task's output to sys.stdout

Every line still goes to `<log_dir>/pipeline.log` and to `<log_dir>/<task>.log`. The console shows:
one line when a step starts and one when it finishes (with its wall time), the progress lines steps
print (slam.progress: training steps, generation, probing, Tune trials, each with an ETA) folded into
one updating line on a terminal (at most one every 30 s per bar elsewhere), and slam's MLflow outage
notices. kfp's executor-input dumps, Ray Tune's status tables, Ray/DeepSpeed/transformers warnings
and loading bars stay in the logs. A failing step prints the last lines of its log. verbose=True
passes everything through, as kfp.local prints it.
"""

from __future__ import annotations

import io
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from slam.progress import MARK, fmt_seconds

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_RAY_PREFIX = re.compile(r"^\s*(\([\w:]+ pid=\d+(?:, ip=[\d.]+)?\)\s*)+")
# slam's own notices worth a line on a quiet console
_NOTICES = ("MLflow unreachable", "MLflow is back", "stayed unreachable", "buffered metric points were dropped")
NON_TTY_EVERY_S = 30.0


class QuietConsole(io.TextIOBase):
    """A stand-in for sys.stdout while the pipeline runs (a context manager that installs itself)."""

    def __init__(self, log_dir: str | Path, verbose: bool = False, out: TextIO | None = None) -> None:
        self.real = out or sys.stdout
        self.verbose = verbose
        self.tty = bool(getattr(self.real, "isatty", lambda: False)())
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.dir / "pipeline.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in __exit__
        self.task_log: TextIO | None = None
        self.task = ""
        self.started: dict[str, float] = {}
        self.last_bar: dict[str, float] = {}
        self.live = False
        self.last_said = ""
        self.tail: list[str] = []
        self.failed: list[str] = []
        self._buf = ""

    # ---- file-like ---------------------------------------------------------------------------------

    def write(self, s: str) -> int:
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._line(line)
        return len(s)

    def flush(self) -> None:
        self.log.flush()
        self.real.flush()

    def isatty(self) -> bool:
        return False  # what prints through us is a log, not a terminal: no tqdm redraws

    def __enter__(self) -> QuietConsole:
        self._saved = sys.stdout
        sys.stdout = self
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._buf:
            self._line(self._buf)
        self._clear_live()
        sys.stdout = self._saved
        for f in (self.task_log, self.log):
            if f is not None:
                f.close()

    # ---- the filter ----------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if text == self.last_said:  # Ray may forward a worker's line twice (trial actor and driver)
            return
        self.last_said = text
        self._clear_live()
        self.real.write(text + "\n")
        self.real.flush()

    def _clear_live(self) -> None:
        if self.live:
            self.real.write("\r\x1b[K")
            self.live = False

    def _line(self, line: str) -> None:
        plain = _ANSI.sub("", line).rstrip("\r")
        start = _START.search(plain)
        if start:
            self._start(start.group(1))  # switches the per-task log first: this line belongs to the new task
        self.log.write(plain + "\n")
        if self.task_log is not None:
            self.task_log.write(plain + "\n")
        if self.verbose:
            self.real.write(line + "\n")
            return
        if start:
            self._say(f"  ▶ {start.group(1)}")
        elif m := _END.search(plain):
            self._end(m.group(1), m.group(2))
        elif MARK in plain:
            self._progress(_RAY_PREFIX.sub("", plain).strip())
        elif any(n in plain for n in _NOTICES):
            self._say("    " + _RAY_PREFIX.sub("", plain).strip().split("]: ", 1)[-1][:200])
        else:
            self.tail = (self.tail + [plain])[-40:]

    def _start(self, task: str) -> None:
        self.task, self.started[task], self.tail = task, time.perf_counter(), []
        if self.task_log is not None:
            self.task_log.close()
        self.task_log = open(self.dir / f"{task}.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def _end(self, task: str, status: str) -> None:
        secs = time.perf_counter() - self.started.get(task, time.perf_counter())
        if status == "SUCCESS":
            self._say(f"  ✓ {task:34s} {fmt_seconds(secs):>8s}")
            return
        self.failed.append(task)
        self._say(f"  ✗ {task:34s} {status} after {fmt_seconds(secs)}; its last lines "
                  f"(all in {self.dir / (task + '.log')}):")
        for t in self.tail[-25:]:
            self._say("      " + t[:240])

    def _progress(self, text: str) -> None:
        text = text[text.index(MARK):]
        desc = text[len(MARK):].split(" ", 1)[0]
        if " took " in text:  # a finished bar stays on screen
            self._say("    " + text[:200])
            return
        if self.tty:
            self._clear_live()
            self.real.write("    " + text[:150])
            self.real.flush()
            self.live = True
            return
        now = time.perf_counter()
        if now - self.last_bar.get(desc, 0.0) >= NON_TTY_EVERY_S:
            self.last_bar[desc] = now
            self._say("    " + text[:200])
