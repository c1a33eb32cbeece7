"""Statistics of the ablation study: answer-format share and paired bootstrap confidence intervals.

    idx = bootstrap_indices(n, 2000, seed=0)
    d, lo, hi = paired_ci(arm_correct, base_correct, idx, seed_draws(3, 2000, seed=1))   # (seeds, n), (n,)

Two sources of noise, both in every interval. The questions: every arm is evaluated on the same ones, so
differences are paired — one bootstrap draw resamples question indices once and applies them to every arm
and seed. The training: an arm's accuracy is its mean over seeds, and each draw also resamples the arm's
seeds (with replacement, independently per arm: seed i gives every arm the same data order, but each arm
trains a different model from it, so treating them as unrelated is the conservative choice), so an arm
whose seeds disagree gets the wider interval it deserves. One seed: questions only. With 2-3 seeds the
seed part is coarse (few distinct resamples) and counts each seed's question noise again: the intervals
err on the wide side.
"""

from __future__ import annotations

import re

import numpy as np

from slam.tasks import ANSWER_SENTENCE

ANSWER_FORMAT = re.compile(ANSWER_SENTENCE)


def in_format(completion: str) -> bool:
    return bool(ANSWER_FORMAT.search(completion or ""))


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def seed_draws(reps: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, reps) seed indices drawn with replacement: which of an arm's seeds each bootstrap draw uses.
    Draw them once per arm and use them for every language (a seed is one trained model)."""
    return np.random.default_rng(seed).integers(0, reps, size=(n_boot, reps))


def boot_means(correct: np.ndarray, idx: np.ndarray, seeds: np.ndarray | None = None) -> np.ndarray:
    """Accuracy in each bootstrap draw, (n_boot,): questions resampled by `idx` (n_boot, n); seeds by `seeds`
    (n_boot, reps; None = every seed in every draw). correct: (reps, n) or (n,) 0/1."""
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    per_seed = correct[:, idx].mean(axis=2)  # (reps, n_boot)
    if seeds is None:
        return per_seed.mean(axis=0)
    return per_seed[seeds, np.arange(len(idx))[:, None]].mean(axis=1)


def mean_ci(correct: np.ndarray, idx: np.ndarray, seeds: np.ndarray | None = None,
            level: float = 0.95) -> tuple[float, float, float]:
    """Accuracy (mean over seeds and questions) and its bootstrap interval; correct: (seeds, n)."""
    boots = boot_means(correct, idx, seeds)
    a = (1 - level) / 2
    return float(np.mean(correct)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def paired_ci(arm: np.ndarray, ref: np.ndarray, idx: np.ndarray, arm_seeds: np.ndarray | None = None,
              ref_seeds: np.ndarray | None = None, level: float = 0.95) -> tuple[float, float, float]:
    """Difference arm - ref in accuracy with a paired bootstrap interval; arm, ref: (seeds, n) or (n,)."""
    boots = boot_means(arm, idx, arm_seeds) - boot_means(ref, idx, ref_seeds)
    a = (1 - level) / 2
    return float(np.mean(arm) - np.mean(ref)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def ci_half_width(p: float, n: int, z: float = 1.96) -> float:
    """Normal-approximation half-width of a proportion's 95% interval: what n questions buy."""
    return z * float(np.sqrt(max(p * (1 - p), 1e-12) / max(n, 1)))
