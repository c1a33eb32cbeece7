"""Which layers to tune, from a probe report's scores (training and the Tune search re-select from here).

    select_layers(report, k=4, selection="contiguous")     # -> [i, i+1, i+2, i+3], ascending
"""

from __future__ import annotations

from collections.abc import Sequence

from slam.errors import SlamError

METHODS = ("msd", "lape", "cosine")
SELECTIONS = ("top-k", "contiguous")


def read_report(uri: str) -> dict:
    """A probe.json, checked before anything indexes into it: finite scores, selected layers within them."""
    import math

    from slam import storage

    report = storage.read_json(uri)
    problems = []
    scores = report.get("scores") if isinstance(report, dict) else None
    if not isinstance(scores, list) or not scores or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in scores):
        problems.append("'scores' must be a non-empty list of finite numbers (one per layer)")
    layers = report.get("selected_layers") if isinstance(report, dict) else None
    if not isinstance(layers, list) or not layers or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(scores or []) for i in layers):
        problems.append("'selected_layers' must be a non-empty list of layer indices within 'scores'")
    if problems:
        raise SlamError(f"{uri} is not a valid probe report ({'; '.join(problems)}): write it with `slam probe`")
    return report


def rank_layers(scores: Sequence[float]) -> list[int]:
    """Layer indices, most language-specific first; ties go to the lower layer (deterministic)."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def select_layers(report: dict, k: int, selection: str = "top-k") -> list[int]:
    """The k layers to tune from a probe report's scores, ascending: the top-k, or the best block of k."""
    scores = report.get("scores") if isinstance(report, dict) else None
    if not scores:
        raise SlamError("probe report has no 'scores': not a probe.json written by `slam probe`")
    n = len(scores)
    problems = []
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        problems.append(f"k must be an integer in 1..{n} (the model has {n} layers), got {k!r}")
    if selection not in SELECTIONS:
        problems.append(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    if problems:
        raise SlamError("; ".join(problems))
    if selection == "top-k":
        return sorted(rank_layers(scores)[:k])
    sums = [sum(float(s) for s in scores[start:start + k]) for start in range(n - k + 1)]
    best = max(range(len(sums)), key=lambda s: (sums[s], -s))  # ties -> the lowest block
    return list(range(best, best + k))
