"""Training data as the loop sees it: a built dataset's rows (slam.data.build.read_examples), tokenized with response-only labels, the
deterministic step -> micro-batch schedule that makes resuming exact (the batch of step s never depends
on history), and the cosine learning-rate schedule.

    rows = select_rows(read_examples(cfg.data.train, "train"), tasks=["cot"], langs=None)   # slam.data.build
    examples, quarantined = encode_rows(tok, rows, "alpaca", max_length=1024)
    lengths = [len(e["input_ids"]) for e in examples]
    for idx in micro_batches(len(examples), step, seed=0, micro=4, accum=1, rank=0, world=1, lengths=lengths): ...
"""

from __future__ import annotations

import math
from typing import Any

import torch


def select_rows(rows: list[dict], tasks: list[str] | None, langs: list[str] | None) -> list[dict]:
    return [r for r in rows if (not tasks or r.get("task") in tasks) and (not langs or r.get("lang") in langs)]


def encode_rows(tok: Any, rows: list[dict], template: str, max_length: int) -> tuple[list[dict], list[dict]]:
    """(encoded examples, quarantined rows): a row too long for max_length is set aside and counted."""
    from slam.prompts import encode_example

    out, bad = [], []
    for r in rows:
        ex = encode_example(tok, r["instruction"], r["response"], template=template, max_length=max_length)
        if ex is None:
            bad.append({"id": r.get("id"), "reason": f"longer than max_length={max_length} tokens"})
        else:
            out.append(ex)
    return out, bad


def micro_batches(n_examples: int, step: int, *, seed: int, micro: int, accum: int, rank: int,
                  world: int, lengths: list[int] | None = None) -> list[list[int]]:
    """Example indices of this rank's micro-batches for optimizer step `step` (1-based).

    The data is an endless stream of seeded per-epoch orders; step s takes the s-th global batch of
    micro*accum*world examples from it. A pure function of the step, so a resumed run sees exactly the
    batches it would have seen, and no example is counted twice. With `lengths` (tokens per example) the
    order is length-grouped (`_grouped_order`): a micro-batch holds rows of similar length, so padding
    (a third of the computed tokens with random batches of 4 on the synthetic world) is mostly gone.
    """
    g = micro * accum * world
    start = (step - 1) * g
    lkey = None if lengths is None else tuple(lengths)

    def at(pos: int) -> int:
        epoch, i = divmod(pos, n_examples)
        order = _perm(n_examples, seed, epoch) if lkey is None else _grouped_order(lkey, seed, epoch, micro)
        return order[i]

    out = []
    for a in range(accum):
        base = start + (a * world + rank) * micro
        out.append([at(base + j) for j in range(micro)])
    return out


_perm_cache: dict[tuple[int, int, int], list[int]] = {}
_grouped_cache: dict[tuple, list[int]] = {}
GROUP_WINDOW = 64
"""Micro-batches whose rows are sorted by length together: wide enough to find similar lengths, narrow
enough that every part of the epoch still mixes rows from all over the shuffled data."""


def _perm(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _perm_cache:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        _perm_cache[key] = torch.randperm(n, generator=g).tolist()
    return _perm_cache[key]


def _grouped_order(lengths: tuple[int, ...], seed: int, epoch: int, micro: int) -> list[int]:
    """The epoch's permutation, cut into windows of GROUP_WINDOW micro-batches, each window sorted by length
    and cut into micro-batches; the full micro-batches are then put in a seeded random order (so the loss
    curve does not follow the lengths), a short remainder stays last so every micro-batch stays aligned."""
    key = (lengths, seed, epoch, micro)
    if key not in _grouped_cache:
        if len(_grouped_cache) > 8:  # one run uses one or two epochs' orders at a time
            _grouped_cache.clear()
        perm = _perm(len(lengths), seed, epoch)
        w = GROUP_WINDOW * micro
        ordered = [i for s in range(0, len(perm), w) for i in sorted(perm[s:s + w], key=lambda i: -lengths[i])]
        full = len(ordered) // micro
        chunks = [ordered[c * micro:(c + 1) * micro] for c in range(full)]
        g = torch.Generator().manual_seed(seed * 100_003 + epoch + 7_919)
        shuffled = [i for c in torch.randperm(full, generator=g).tolist() for i in chunks[c]]
        _grouped_cache[key] = shuffled + ordered[full * micro:]
    return _grouped_cache[key]


def total_steps(n_examples: int, epochs: float, max_steps: int | None, global_batch: int) -> int:
    if max_steps:
        return max_steps
    return max(1, math.ceil(epochs * n_examples / global_batch))


def cosine_lambda(total: int, warmup_ratio: float, min_ratio: float):
    warmup = int(total * warmup_ratio)

    def f(i: int) -> float:  # i = optimizer steps taken so far
        if i < warmup:
            return (i + 1) / (warmup + 1)
        progress = (i - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f
