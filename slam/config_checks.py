"""The value checks of a loaded config (types are checked by slam.config): ranges, finiteness, languages.

    problems = semantic_problems(cfg)        # [] when fine; slam.config.from_dict raises them all at once
    check_langs(["en", "xx"], "--langs")     # ConfigError naming the unknown code

Every float is finite (NaN passes every `<`/`>` check), counts and sizes are positive, shares are in
range, layer lists are bounded (slam.config.MAX_INDEX) and language codes are ones slam knows.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from slam.config import MAX_INDEX, probe_problems
from slam.errors import ConfigError

if TYPE_CHECKING:
    from slam.config import SlamConfig


def check_langs(codes: list[str], where: str, problems: list[str] | None = None) -> None:
    """Every code is a language slam knows (slam/langs.py); problems appended, or raised."""
    from slam.langs import NAMES

    bad = [c for c in codes if c not in NAMES]
    if bad:
        msg = f"{where}: unknown language code(s) {', '.join(map(repr, bad))} (known: {', '.join(sorted(NAMES))})"
        if problems is None:
            raise ConfigError(msg)
        problems.append(msg)


def _finite_problems(cfg: SlamConfig) -> list[str]:
    """NaN/inf in any float field (NaN slips through every `<`/`>` check)."""
    out = []
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for f in dataclasses.fields(sub):
            values = getattr(sub, f.name)
            for v in values if isinstance(values, list) else [values]:
                if isinstance(v, float) and not math.isfinite(v):
                    out.append(f"{section.name}.{f.name}: must be a finite number, got {v}")
    return out


def semantic_problems(cfg: SlamConfig) -> list[str]:
    p: list[str] = _finite_problems(cfg)
    t = cfg.train
    tu = cfg.tune
    for name, v in [("train.epochs", t.epochs), ("train.cpus_per_worker", t.cpus_per_worker),
                    ("tune.num_samples", tu.num_samples), ("tune.max_steps", tu.max_steps),
                    ("tune.grace_period", tu.grace_period), ("probe.max_length", cfg.probe.max_length),
                    ]:
        if isinstance(v, (int, float)) and v <= 0:
            p.append(f"{name}: must be > 0, got {v}")
    for name, v in [("train.max_failures", t.max_failures), ("tune.max_concurrent_trials", tu.max_concurrent_trials),
                    ("probe.max_questions", cfg.probe.max_questions), ("tracking.retries", cfg.tracking.retries),
                    ("train.weight_decay", t.weight_decay), ("train.max_grad_norm", t.max_grad_norm)]:
        if v < 0:
            p.append(f"{name}: must be >= 0, got {v}")
    if not 0 <= t.min_lr_ratio <= 1:
        p.append(f"train.min_lr_ratio: must be in [0, 1], got {t.min_lr_ratio}")
    if any(v <= 0 for v in tu.lr_grid):
        p.append(f"tune.lr_grid: learning rates must be > 0, got {tu.lr_grid}")
    if len(tu.k_grid) > 64 or any(k > MAX_INDEX for k in tu.k_grid):
        p.append(f"tune.k_grid: at most 64 layer counts of at most {MAX_INDEX}, got {len(tu.k_grid)} values")
    if len(set(tu.k_grid)) != len(tu.k_grid):
        p.append(f"tune.k_grid: duplicate layer counts in {tu.k_grid}")
    if t.layers is not None and any(i >= MAX_INDEX for i in t.layers):
        p.append(f"train.layers: layer indices must be < {MAX_INDEX}")
    return p + _list_problems(cfg) + _original_problems(cfg)


def _list_problems(cfg: SlamConfig) -> list[str]:
    p: list[str] = []
    for name, langs in [("data.langs", cfg.data.langs), ("probe.langs", cfg.probe.langs)]:
        check_langs(langs, name, p)
        if len(set(langs)) != len(langs):
            p.append(f"{name}: duplicate language codes in {langs}")
    return p


def _original_problems(cfg: SlamConfig) -> list[str]:
    p: list[str] = []
    t = cfg.train
    for name, v in [("train.lr", t.lr), ("train.micro_batch_size", t.micro_batch_size),
                    ("train.grad_accum", t.grad_accum), ("train.num_workers", t.num_workers),
                    ("probe.top_k", cfg.probe.top_k), ("probe.batch_size", cfg.probe.batch_size),
                    ("data.max_length", cfg.data.max_length)]:
        if isinstance(v, (int, float)) and v <= 0:
            p.append(f"{name}: must be > 0, got {v}")
    # step intervals and counts where 0 means "off"
    for name, v in [("train.val_every", t.val_every), ("train.val_accuracy_every", t.val_accuracy_every),
                    ("train.val_accuracy_limit", t.val_accuracy_limit), ("train.report_every", t.report_every),
                    ("train.checkpoint_every", t.checkpoint_every)]:
        if v < 0:
            p.append(f"{name}: must be >= 0 (0 = off), got {v}")
    if t.zero_stage not in (0, 1, 2, 3):
        p.append(f"train.zero_stage: must be 0-3, got {t.zero_stage}")
    if t.max_steps is not None and t.max_steps <= 0:
        p.append(f"train.max_steps: must be > 0, got {t.max_steps}")
    if t.layers is not None and any(i < 0 for i in t.layers):
        p.append(f"train.layers: layer indices must be >= 0, got {t.layers}")
    if t.layers is not None and len(set(t.layers)) != len(t.layers):
        p.append(f"train.layers: duplicate layer index in {t.layers}")
    if not 0 <= cfg.probe.fire_fraction <= 1:
        p.append(f"probe.fire_fraction: must be in [0, 1], got {cfg.probe.fire_fraction}")
    if not 0 <= t.warmup_ratio < 1:
        p.append(f"train.warmup_ratio: must be in [0, 1), got {t.warmup_ratio}")
    p += probe_problems(cfg.probe, prefix="probe.")
    for name, v in [("tracking.gate_margin", cfg.tracking.gate_margin),
                    ("tracking.outage_wait_s", cfg.tracking.outage_wait_s)]:
        if not v >= 0:  # NaN fails too
            p.append(f"{name}: must be >= 0, got {v}")
    if cfg.tune.val_accuracy_limit < 0 or cfg.tune.english_tolerance < 0:
        p.append("tune.val_accuracy_limit and tune.english_tolerance: must be >= 0")
    if any(k <= 0 for k in cfg.tune.k_grid):
        p.append(f"tune.k_grid: layer counts must be > 0, got {cfg.tune.k_grid}")
    return p
