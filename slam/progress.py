"""Progress with an ETA for the long parts (training steps, generation, probing, Tune trials).

    with progress(total=60, desc="train", unit="step") as bar:
        for step in ...:
            bar.update(1, loss=f"{loss:.3f}")

In a terminal this is a tqdm bar. Anywhere else (a KFP pod, a kfp.local task, a Ray worker whose output
the driver forwards) it is a plain line at most every few seconds, starting with `MARK`:

    » train 30/60 step 50% | 2.1 s/step | ETA 1m03s | loss 1.234

`slam demo` and `slam pipeline run` show only these lines (and the step start/finish lines) on the
console, folding each bar into one line that updates in place; everything else goes to the log files.
SLAM_PROGRESS=lines forces the line form, SLAM_PROGRESS=off hides progress.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

MARK = "» "


def fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class LineProgress:
    """A progress bar as log lines: at most one every `every_s` seconds, and one at the end."""

    def __init__(self, total: int, desc: str, unit: str = "it", every_s: float = 5.0, initial: int = 0,
                 concurrent: bool = False) -> None:
        self.total, self.desc, self.unit, self.every_s = max(0, int(total)), desc, unit, every_s
        self.n = self.start_n = int(initial)
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.info: dict[str, Any] = {}
        # Items worked on together (a batch of generated answers) finish long after they started, then in
        # quick succession: elapsed / done overstates the time per item by the batch's latency (the first
        # answer of 144 after 19 s read "ETA 44m"). Their rate is counted from the first finished item on.
        self.concurrent = concurrent
        self.first: tuple[float, int] | None = None

    def update(self, n: int = 1, **info: Any) -> None:
        now = time.perf_counter()
        if self.first is None and n > 0:
            self.first = (now, self.n + n)
        self.n += n
        self.info.update(info)
        if now - self.last >= self.every_s or self.n >= self.total:
            self.last = now
            self._emit(now)

    def set_postfix(self, **info: Any) -> None:
        self.info.update(info)

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        done = self.n - self.start_n
        elapsed = now - self.t0
        pct = f" {100 * self.n // self.total}%" if self.total else ""
        parts = [f"{MARK}{self.desc} {self.n}/{self.total} {self.unit}{pct}"]
        per = elapsed / done if done > 0 else None
        if self.concurrent and self.n < self.total:
            t1, n1 = self.first or (now, self.n)
            per = (now - t1) / (self.n - n1) if self.n > n1 else None
        if per is not None and per > 0:
            parts.append(f"{per:.1f} s/{self.unit}" if per >= 1 else f"{1 / per:.1f} {self.unit}/s")
            parts.append(f"ETA {fmt_seconds(per * (self.total - self.n))}" if self.n < self.total
                         else f"took {fmt_seconds(elapsed)}")
        parts += [f"{k} {v}" for k, v in self.info.items()]
        return " | ".join(parts)

    def _emit(self, now: float) -> None:
        print(self.line(now), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.n < self.total and self.n > self.start_n:
            self._emit(time.perf_counter())

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Off:
    n = 0

    def update(self, n: int = 1, **info: Any) -> None:
        pass

    def set_postfix(self, **info: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class _Tqdm:
    """tqdm with the same update(n, **info) call."""

    def __init__(self, total: int, desc: str, unit: str, initial: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)

    def update(self, n: int = 1, **info: Any) -> None:
        if info:
            self.bar.set_postfix(info, refresh=False)
        self.bar.update(n)

    def set_postfix(self, **info: Any) -> None:
        self.bar.set_postfix(info)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> _Tqdm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0,
             concurrent: bool = False) -> Any:
    """A bar for a terminal, log lines elsewhere, nothing when disabled (see module doc). `concurrent`: the
    items are worked on together and finish in bursts (see LineProgress)."""
    mode = os.environ.get("SLAM_PROGRESS", "")
    if not enabled or mode == "off":
        return _Off()
    if mode != "lines" and sys.stderr.isatty():
        return _Tqdm(total, desc, unit, initial)
    return LineProgress(total, desc, unit, initial=initial, concurrent=concurrent)
