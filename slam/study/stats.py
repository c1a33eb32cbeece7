"""Statistics of the ablation study: answer-format share and paired bootstrap confidence intervals.

    lo, hi = paired_ci(arm_correct, base_correct, n_boot=2000, seed=0)   # (seeds, n) and (n,) 0/1 arrays

Every arm is evaluated on the same questions, so differences are paired: one bootstrap draw resamples
question indices once and applies them to every arm and seed (an arm's accuracy = its mean over seeds).
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


def mean_ci(correct: np.ndarray, idx: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Accuracy (mean over seeds and questions) and its bootstrap interval; correct: (seeds, n)."""
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    boots = correct[:, idx].mean(axis=(0, 2))  # (n_boot,)
    a = (1 - level) / 2
    return float(correct.mean()), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def paired_ci(arm: np.ndarray, ref: np.ndarray, idx: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Difference arm - ref in accuracy with a paired bootstrap interval; arm, ref: (seeds, n) or (n,)."""
    arm = np.atleast_2d(np.asarray(arm, dtype=float))
    ref = np.atleast_2d(np.asarray(ref, dtype=float))
    boots = arm[:, idx].mean(axis=(0, 2)) - ref[:, idx].mean(axis=(0, 2))
    a = (1 - level) / 2
    return float(arm.mean() - ref.mean()), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def ci_half_width(p: float, n: int, z: float = 1.96) -> float:
    """Normal-approximation half-width of a proportion's 95% interval: what n questions buy."""
    return z * float(np.sqrt(max(p * (1 - p), 1e-12) / max(n, 1)))
