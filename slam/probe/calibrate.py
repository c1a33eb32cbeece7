"""Calibration and stability of the probe's layer scores, from the per-block counts of one pass.

    cal = calibrate(counts, "msd", cfg, langs)      # -> {"scores": z, "raw_scores", "p_values", "stability", ...}

- **Null.** The same statistic on the same data with language labels shuffled within each block of
  parallel problems (every block gets its own permutation): what the score looks like when language
  carries no information. Each layer gets its excess over the null mean (the default ranking score:
  what is left of the statistic once chance differences between languages — fewer tokens, base
  rates — are taken out), a z-score (mean, std over cfg.permutations shuffles) and a one-sided
  permutation p-value. z is not the default ranking: a strong real signal also widens its own null
  (shuffled labels mix it into every pseudo-language), so z flattens the strongest layers.
- **Stability.** cfg.split_halves random halves of the blocks, each half scored (and calibrated) on
  its own: Kendall tau between the two halves' layer scores and the overlap of their selections;
  leave-one-language-out: the selection without each language in turn. The probe is *stable* when
  mean tau >= cfg.min_tau, mean split-half overlap and the worst leave-one-out overlap >=
  cfg.min_overlap * k, and at least one layer beats the null (p <= 0.05); otherwise it says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from slam.config import ProbeConfig
from slam.probe.collect import Counts
from slam.probe.scores import kendall_tau, score_cosine, score_lape, score_msd
from slam.probe.select import PROBE_SELECTIONS, choose

ALPHA = 0.05


def statistic(method: str, counts: Counts, cfg: ProbeConfig, blocks: np.ndarray, slots: np.ndarray,
              en: int) -> tuple[np.ndarray, dict]:
    """The method's per-layer score on the given blocks; slots[b, i] = which measured language fills
    language position i in block b (the identity for the real data, a permutation for the null)."""
    b = blocks[:, None]
    if method == "cosine":
        sim = counts.sim[blocks[:, None, None], slots[:, :, None], slots[:, None, :]].sum(axis=0)
        return score_cosine(sim / max(1, int(counts.questions[blocks].sum())), en)
    tokens = np.maximum(counts.tokens[b, slots].sum(axis=0), 1)[:, None]
    # sum over blocks of the permuted counts as one matmul: (slots, blocks*langs) one-hot @ (blocks*langs, width)
    n_langs = counts.tokens.shape[1]
    pick = np.zeros((slots.shape[1], counts.tokens.size), dtype=np.float32)
    pick[np.arange(slots.shape[1])[None, :].repeat(len(blocks), 0), b * n_langs + slots] = 1.0
    flat = (pick @ _flat_fires(counts)) / tokens
    bounds = np.cumsum([0, *counts.widths])
    probs = [flat[:, a:z].astype(np.float64) for a, z in zip(bounds[:-1], bounds[1:], strict=True)]
    if method == "msd":
        return score_msd(probs, en, cfg.activation, cfg.activation_quantile, cfg.fire_fraction, cfg.activation_margin)
    return score_lape(probs, cfg.lape_entropy_quantile, cfg.lape_prob_quantile)


def _flat_fires(counts: Counts) -> np.ndarray:
    """(blocks*langs, total width) float32 fire counts, built once per Counts (exact below 2^24 per cell)."""
    if getattr(counts, "_flat", None) is None:
        counts._flat = np.concatenate([f.reshape(-1, f.shape[-1]) for f in counts.fires], axis=1).astype(np.float32)
    return counts._flat


def calibrated_scores(method: str, counts: Counts, cfg: ProbeConfig, blocks: np.ndarray, langs: Sequence[int],
                      en: int, rng: np.random.Generator, permutations: int) -> dict[str, Any]:
    """Observed statistic, its language-shuffled null, z-scores and p-values on `blocks` x `langs`."""
    langs = np.asarray(langs)
    ident = np.tile(langs, (len(blocks), 1))
    observed, matrices = statistic(method, counts, cfg, blocks, ident, en)
    null = np.array([statistic(method, counts, cfg, blocks, _shuffled(ident, rng), en)[0]
                     for _ in range(permutations)]) if permutations else np.zeros((0, len(observed)))
    if len(null) >= 2:
        mean, std = null.mean(axis=0), null.std(axis=0, ddof=1)
        floor = 1e-9 * max(1.0, float(np.abs(observed).max()))
        z = (observed - mean) / np.maximum(std, floor)
        p = (1 + (null >= observed[None] - 1e-12).sum(axis=0)) / (len(null) + 1)
    else:
        mean, std, z, p = np.zeros_like(observed), np.zeros_like(observed), observed.copy(), np.ones_like(observed)
    return {"raw": observed, "matrices": matrices, "null_mean": mean, "null_std": std, "z": z, "p": p,
            "excess": observed - mean}


def _shuffled(ident: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.permuted(ident, axis=1)


def ranking_scores(cal: dict[str, Any], cfg: ProbeConfig) -> np.ndarray:
    return cal[cfg.rank_by]


def calibrate(counts: Counts, method: str, cfg: ProbeConfig, langs: Sequence[str]) -> dict[str, Any]:
    """Calibrated scores of the whole probe set plus its stability numbers (see the module doc)."""
    rng = np.random.default_rng(cfg.seed)
    n_blocks, all_langs = len(counts.questions), list(range(len(langs)))
    en = list(langs).index("en") if "en" in langs else 0
    blocks = np.arange(n_blocks)
    full = calibrated_scores(method, counts, cfg, blocks, all_langs, en, rng, cfg.permutations)
    scores = ranking_scores(full, cfg)
    k = min(cfg.top_k, len(scores))
    selection = cfg.selection if cfg.selection in PROBE_SELECTIONS else "top-k"
    chosen = choose(scores, k, selection)
    half_perms = max(20, cfg.permutations // 5) if cfg.permutations and cfg.rank_by != "raw" else 0

    taus, overlaps, topk = [], [], []
    if n_blocks >= 4:
        for _ in range(cfg.split_halves):
            order = rng.permutation(n_blocks)
            a, b = np.sort(order[: n_blocks // 2]), np.sort(order[n_blocks // 2: 2 * (n_blocks // 2)])
            sa = ranking_scores(calibrated_scores(method, counts, cfg, a, all_langs, en, rng, half_perms), cfg)
            sb = ranking_scores(calibrated_scores(method, counts, cfg, b, all_langs, en, rng, half_perms), cfg)
            taus.append(kendall_tau(sa, sb))
            overlaps.append(len(set(choose(sa, k, selection)) & set(choose(sb, k, selection))))
            topk.append(len(set(choose(sa, k, "top-k")) & set(choose(sb, k, "top-k"))))
    lolo = {}
    droppable = [i for i in all_langs if i != en or method == "lape"]
    if len(langs) >= 3:
        for drop in droppable:
            keep = [i for i in all_langs if i != drop]
            sub = calibrated_scores(method, counts, cfg, blocks, keep, keep.index(en) if en in keep else 0, rng,
                                    cfg.permutations)
            sel = choose(ranking_scores(sub, cfg), k, selection)
            lolo[langs[drop]] = {"selected": sel, "overlap": len(set(sel) & set(chosen)),
                                 "tau": kendall_tau(ranking_scores(sub, cfg), scores)}
    stability = _verdict(cfg, k, selection, taus, overlaps, topk, lolo, full["p"], n_blocks)
    return {"scores": scores, "full": full, "chosen": chosen, "stability": stability}


def _verdict(cfg: ProbeConfig, k: int, selection: str, taus: list[float], overlaps: list[int], topk: list[int],
             lolo: dict[str, dict], p: np.ndarray, n_blocks: int) -> dict[str, Any]:
    need = math.ceil(cfg.min_overlap * k - 1e-9)
    significant = [int(i) for i in np.flatnonzero(p <= ALPHA)] if cfg.permutations else []
    out: dict[str, Any] = {
        "blocks": n_blocks, "split_halves": len(taus), "selection": selection, "k": k,
        "split_half_tau": _summary(taus), "split_half_overlap": _summary(overlaps), "split_half_topk_overlap": _summary(topk),
        "leave_one_language_out": lolo,
        "lolo_min_overlap": min((v["overlap"] for v in lolo.values()), default=None),
        "significant_layers": significant, "alpha": ALPHA,
        "thresholds": {"min_tau": cfg.min_tau, "min_overlap": need},
    }
    warnings = []
    if not taus:
        warnings.append(f"only {n_blocks} block(s) of parallel problems: split-half stability cannot be measured "
                        "(need >= 4; use more probe questions)")
    else:
        if out["split_half_tau"]["mean"] < cfg.min_tau:
            warnings.append(f"split-half Kendall tau {out['split_half_tau']['mean']:.2f} < {cfg.min_tau}: the layer "
                            "ranking changes with the probe questions")
        if out["split_half_overlap"]["mean"] < need:
            warnings.append(f"split-half selection overlap {out['split_half_overlap']['mean']:.1f}/{k} < {need}/{k}")
    if out["lolo_min_overlap"] is not None and out["lolo_min_overlap"] < need:
        worst = min(lolo, key=lambda lang: lolo[lang]["overlap"])
        warnings.append(f"without {worst} the selection keeps {lolo[worst]['overlap']}/{k} layers (< {need}): "
                        "one language drives it")
    if cfg.permutations and not significant:
        warnings.append("no layer scores above the language-shuffled null (p <= 0.05): no language signal found")
    if not cfg.permutations:
        warnings.append("permutations = 0: scores are not compared with a null")
    out["stable"] = not warnings
    out["warnings"] = warnings
    return out


def _summary(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"mean": None, "min": None, "max": None}
    return {"mean": float(np.mean(xs)), "min": float(np.min(xs)), "max": float(np.max(xs))}
