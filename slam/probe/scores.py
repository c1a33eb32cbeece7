"""Per-layer language-specificity scores from the probe's counts (see slam.probe for the methods).

    scores, matrices = score_msd(probs, en=0, fire_fraction=0.01)   # probs[layer]: (langs, width) firing rates
"""

from __future__ import annotations

import numpy as np


def _msd(x: np.ndarray) -> np.ndarray:
    """Mean squared deviation over languages (axis 0)."""
    return ((x - x.mean(axis=0, keepdims=True)) ** 2).mean(axis=0)


def score_msd(probs: list[np.ndarray], en: int, fire_fraction: float) -> tuple[np.ndarray, dict]:
    """probs[layer]: (langs, width) activation probabilities -> per-layer scores and layer x lang matrices."""
    n_rows, o_rows = [], []
    for p in probs:
        active = p >= fire_fraction
        n_rows.append(active.mean(axis=1))
        inter = (active & active[en]).sum(axis=1)
        union = (active | active[en]).sum(axis=1)
        o_rows.append(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
    n, o = np.array(n_rows).T, np.array(o_rows).T  # (langs, layers)
    return _msd(n) + _msd(o), {"active": n.T.tolist(), "overlap_en": o.T.tolist()}


def score_lape(probs: list[np.ndarray], entropy_quantile: float, prob_quantile: float) -> tuple[np.ndarray, dict]:
    """Tang et al. 2024 (their `identify.py`), with a stable sort so ties resolve deterministically."""
    widths = [p.shape[1] for p in probs]
    allp = np.concatenate(probs, axis=1).T  # (neurons, langs)
    total = allp.sum(axis=1, keepdims=True)
    dist = np.divide(allp, total, out=np.zeros_like(allp), where=total > 0)
    entropy = -(dist * np.log(np.where(dist > 0, dist, 1.0))).sum(axis=1)
    flat = np.sort(allp.reshape(-1))
    bar = flat[max(0, round(len(flat) * prob_quantile) - 1)]
    entropy = np.where((allp > bar).any(axis=1), entropy, np.inf)  # never strongly active: not specific
    n_pick = min(max(1, round(len(entropy) * entropy_quantile)), int(np.isfinite(entropy).sum()))
    picked = np.argsort(entropy, kind="stable")[:n_pick]
    specific = np.zeros(allp.shape, dtype=bool)
    specific[picked] = allp[picked] > bar  # language(s) each picked neuron belongs to
    chosen = np.zeros(len(entropy), dtype=bool)
    chosen[picked] = True
    bounds = np.cumsum([0, *widths])
    scores = np.array([chosen[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    per_lang = [(specific[a:b].sum(axis=0) / (b - a)).tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return scores, {"specific": per_lang}
