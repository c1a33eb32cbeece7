"""Bounded retries with exponential backoff for network calls: one policy, one loop, one final error.

    from slam.retry import Retry, retrying
    obj = retrying(lambda: api.get_namespaced_custom_object(...), what="get RayJob x",
                   transient=is_transient_k8s, policy=Retry(attempts=6))

Every client call slam makes to a service that can blip (Kubernetes API, Ray Job Submission API, the KFP
API) goes through here with a per-request timeout set by the caller: a transient failure (5xx, 429,
connection refused/reset, read timeout) is retried `attempts` times, sleeping base, 2*base, 4*base, …
(capped, with jitter so parallel retries do not march in step); anything else - and the last transient
failure - becomes one SlamError naming the call, the attempts, the time spent and the last error.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from slam.errors import SlamError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    attempts: int = 6
    """Tries in all (1 = no retry)."""
    base_s: float = 1.0
    factor: float = 2.0
    max_sleep_s: float = 20.0
    jitter: float = 0.2
    """Each sleep is scaled by a random factor in [1 - jitter, 1 + jitter]."""

    def sleeps(self) -> list[float]:
        return [min(self.max_sleep_s, self.base_s * self.factor ** i) for i in range(max(0, self.attempts - 1))]


class RetriesExhausted(SlamError):
    """A network call kept failing transiently; the message says which, how often and the last error."""


def first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()
    return (f"{type(e).__name__}: {text[0] if text else ''}")[:limit]


def retrying(fn: Callable[[], T], *, what: str, transient: Callable[[BaseException], bool], policy: Retry | None = None,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
             on_retry: Callable[[int, BaseException, float], None] | None = None) -> T:
    """fn() with bounded retries of transient failures (see module docstring); non-transient errors pass."""
    policy = policy or Retry()
    t0 = clock()
    sleeps = policy.sleeps()
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - classified right below
            if not transient(e):
                raise
            if attempt >= len(sleeps):
                raise RetriesExhausted(
                    f"{what}: still failing after {policy.attempts} attempts over {clock() - t0:.0f}s "
                    f"({first_line(e)})") from None
            pause = sleeps[attempt] * (1 + policy.jitter * (2 * random.random() - 1))
            if on_retry is not None:
                on_retry(attempt + 1, e, pause)
            else:
                log.warning("%s failed (%s); retry %d/%d in %.1fs", what, first_line(e, 160), attempt + 1,
                            policy.attempts - 1, pause)
            sleep(pause)
    raise AssertionError("unreachable")  # the loop returns or raises
