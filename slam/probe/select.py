"""Which layers to tune: from a probe report's (calibrated) scores, or a control that ignores them.

    select_layers(report, k=4, selection="contiguous")      # -> [i, i+1, i+2, i+3], ascending
    select_layers(report, k=6, selection="random-k", seed=1)

Policies:
- `top-k`: the k highest-scoring layers anywhere in the network (probe evidence);
- `contiguous`: the block of k adjacent layers with the highest summed score (probe evidence);
- `bottom-k`: layers 0..k-1, the paper's recipe (its released scripts tune layers 0-4 / 0-5);
- `random-k`: k layers drawn uniformly (seeded), a control;
- `top-layers`: the last k layers, a control.

A report whose probe was unstable carries `fallback: "bottom-k"`; the probe-evidence policies then
return bottom-k (the documented fallback), unless the caller asks for the raw probe choice
(`fallback=False`, what `slam study` trains as its "probe" arm).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from slam.errors import SlamError

METHODS = ("msd", "lape", "cosine")
PROBE_SELECTIONS = ("top-k", "contiguous")
SELECTIONS = (*PROBE_SELECTIONS, "bottom-k", "random-k", "top-layers")


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


def tune_selections(selections: Sequence[str], report: dict) -> list[str]:
    """The policies a layer search tries: the ones asked for, or the probe's own (its report's `selection`)."""
    return list(selections) or [report.get("selection") or "top-k"]


def rank_layers(scores: Sequence[float]) -> list[int]:
    """Layer indices, most language-specific first; ties go to the lower layer (deterministic)."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def choose(scores: Sequence[float], k: int, selection: str, seed: int = 0) -> list[int]:
    """The k layers a policy picks given per-layer scores (ascending). Inputs are assumed valid."""
    n = len(scores)
    if selection == "top-k":
        return sorted(rank_layers(scores)[:k])
    if selection == "contiguous":
        sums = [sum(float(s) for s in scores[start:start + k]) for start in range(n - k + 1)]
        best = max(range(len(sums)), key=lambda s: (sums[s], -s))  # ties -> the lowest block
        return list(range(best, best + k))
    if selection == "bottom-k":
        return list(range(k))
    if selection == "top-layers":
        return list(range(n - k, n))
    return sorted(random.Random(seed).sample(range(n), k))


def select_layers(report: dict, k: int, selection: str = "top-k", *, seed: int = 0, fallback: bool = True) -> list[int]:
    """The k layers to tune from a probe report, ascending (see the module doc for the policies)."""
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
    if fallback and selection in PROBE_SELECTIONS and report.get("fallback") == "bottom-k":
        selection = "bottom-k"
    return choose(scores, k, selection, seed)
