"""Per-layer language-specificity statistics from aggregated probe counts (see slam.probe for the methods).

    scores, matrices = score_msd(probs, en=0, how="neuron")   # probs[layer]: (langs, width) activation probabilities

Each function is a pure statistic of per-language aggregates; slam.probe.calibrate computes it again on
language-shuffled and half-sized data to say how far it stands above chance and how stable it is.
"""

from __future__ import annotations

import numpy as np


def _msd(x: np.ndarray) -> np.ndarray:
    """Mean squared deviation over languages (axis 0)."""
    return ((x - x.mean(axis=0, keepdims=True)) ** 2).mean(axis=0)


def activated(p: np.ndarray, how: str, quantile: float, fire_fraction: float, margin: float = 0.05) -> np.ndarray:
    """Which neurons count as activated for each language (langs, width) - a bar that discriminates
    (SiLU-gated neurons fire on 20-80% of tokens: the fixed bar p >= 0.01 marks ~all of them activated in
    every language):
    - `neuron`: the neuron's activation probability in this language is above its mean over languages by
      more than `margin` (a per-neuron bar: a language "activates" a neuron it uses clearly more than the
      others do; the margin keeps tiny, consistent differences from counting as much as large ones);
    - `layer`: above this layer's `quantile` of all its (language, neuron) probabilities (the top 10%);
    - `fixed`: p >= fire_fraction (the uncalibrated reconstruction)."""
    if how == "neuron":
        return p > p.mean(axis=0, keepdims=True) + margin
    if how == "layer":
        return p > float(np.quantile(p, quantile))
    return p >= fire_fraction


def score_msd(probs: list[np.ndarray], en: int, how: str = "neuron", quantile: float = 0.9,
              fire_fraction: float = 0.01, margin: float = 0.05) -> tuple[np.ndarray, dict]:
    """probs[layer]: (langs, width) activation probabilities -> per-layer scores and layer x lang matrices:
    MSD over languages of the activated share plus MSD over the non-English languages of their Jaccard
    overlap with English."""
    n_rows, o_rows = [], []
    for p in probs:
        active = activated(p, how, quantile, fire_fraction, margin)
        n_rows.append(active.mean(axis=1))
        inter = (active & active[en]).sum(axis=1)
        union = (active | active[en]).sum(axis=1)
        o_rows.append(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
    n, o = np.array(n_rows).T, np.array(o_rows).T  # (langs, layers)
    # English's overlap with itself is 1 by construction: the overlap term compares the other languages
    others = [i for i in range(o.shape[0]) if i != en]
    return _msd(n) + (_msd(o[others]) if len(others) > 1 else 0.0), {"active": n.T.tolist(), "overlap_en": o.T.tolist()}


def score_lape(probs: list[np.ndarray], entropy_quantile: float, prob_quantile: float) -> tuple[np.ndarray, dict]:
    """Tang et al. 2024 (their `identify.py`), with a stable sort so ties resolve deterministically.

    The layer score is continuous: the mean over the layer's neurons of log(L) - H (how far each
    strongly-active neuron's distribution over languages is from uniform; 0 for neurons never above the
    bar). Tang et al.'s count of the lowest-entropy `entropy_quantile` of all neurons is kept as the
    `specific` matrix; as a score it saturates - a fixed quota of neurons is always picked somewhere, so
    shuffled languages score the same as real ones."""
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
    info = np.where(np.isfinite(entropy), np.log(allp.shape[1]) - entropy, 0.0)
    scores = np.array([info[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    per_lang = [(specific[a:b].sum(axis=0) / (b - a)).tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return scores, {"specific": per_lang}


def score_cosine(sim: np.ndarray, en: int) -> tuple[np.ndarray, dict]:
    """sim: (langs, langs, layers) mean question-level cosine similarity -> 1 - mean similarity with English."""
    others = [li for li in range(sim.shape[0]) if li != en]
    return 1.0 - sim[others, en].mean(axis=0), {"similarity_en": sim[:, en].T.tolist()}


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two score vectors (ties counted as in scipy.stats.kendalltau); 0 when undefined."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    denom = np.sqrt(float((da != 0).sum()) * float((db != 0).sum()))
    return float((da * db).sum() / denom) if denom > 0 else 0.0
