"""One pass of parallel questions through the frozen model; forward hooks keep streaming counts only.

    langs, pids, texts = parallel_questions(records, ["en", "de"], max_questions=64)
    counts = collect(model, tok, langs, texts, cfg, neurons=True, cosine=False)   # -> Counts

Counts are kept per *block* of parallel problems (question i belongs to block i mod cfg.blocks): per
block, language and neuron an int32 fire counter on the model's device; per block, layer and language
pair a running sum of question-level cosine similarities. Memory grows with blocks x languages x
width, never with the data. Blocks are what the calibration resamples: the null shuffles language
labels within each block of parallel problems, split-half stability draws halves of the blocks.

Token balance: with cfg.balance_tokens every language contributes (in expectation) as many tokens as
the language with the fewest (each token kept with probability min_tokens / tokens_L, seeded), so a
language its tokenizer splits 5x finer (Thai on SmolLM2) gets no more weight nor less noise than
English. Special tokens (BOS, padding) are not counted: they are the same in every language.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from slam.arch import Arch, describe
from slam.config import ProbeConfig
from slam.errors import SlamError

log = logging.getLogger(__name__)


def _field(r: Any, name: str) -> Any:
    return r.get(name) if isinstance(r, dict) else getattr(r, name, None)


def parallel_questions(records: Sequence[Any], langs: Sequence[str] | None,
                       max_questions: int | None) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(langs, problem_ids, {lang: questions}) for the problems present in every language, in a fixed
    order. Records may be `slam.data.records.Record`s or dicts with lang/problem_id/question."""
    by_lang: dict[str, dict[str, str]] = {}
    for r in records:
        lang, pid, q = _field(r, "lang"), _field(r, "problem_id"), _field(r, "question")
        if lang and pid is not None and isinstance(q, str) and q.strip():
            by_lang.setdefault(lang, {}).setdefault(str(pid), q)
    langs = list(langs) if langs else sorted(by_lang, key=lambda x: (x != "en", x))
    missing = [lang for lang in langs if lang not in by_lang]
    if missing:
        have = ", ".join(sorted(by_lang)) or "none"
        raise SlamError(f"no probe questions for language(s) {', '.join(missing)} (the data has: {have})")
    common = set.intersection(*(set(by_lang[lang]) for lang in langs))
    if not common:
        raise SlamError(f"no problem_id is present in all of {', '.join(langs)}: probing needs parallel questions")
    pids = sorted(common, key=_natural_key)
    if max_questions:
        pids = pids[:max_questions]
    return langs, pids, {lang: [by_lang[lang][p] for p in pids] for lang in langs}


def _natural_key(s: str) -> tuple:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


# --------------------------------------------------------------------------------------------------
# Hooks: streaming statistics


def _sign_preserving(act: nn.Module) -> bool:
    """True when act(x) > 0 exactly when x > 0 (SiLU, GELU, ReLU...): then the threshold-0 test can
    skip recomputing the activation."""
    x = torch.cat([torch.linspace(-30, 30, 6001), torch.tensor([-1e-4, 1e-4, -1e-2, 1e-2])])
    x = x[x != 0]
    with torch.no_grad():
        y = act(x)
    return bool(torch.equal(y > 0, x > 0))


class _Stats:
    """Counters filled by the hooks. `begin(lang, mask)` before each forward names whose tokens these are."""

    def __init__(self, n_blocks: int, n_langs: int, widths: list[int], device: torch.device, threshold: float,
                 neurons: bool, cosine: bool):
        self.threshold = threshold
        self.fires = ([torch.zeros((n_blocks, n_langs, w), dtype=torch.int32, device=device) for w in widths]
                      if neurons else [])
        self.pooled: list[list[torch.Tensor | None]] = [[None] * len(widths) for _ in range(n_langs)] if cosine else []
        self.lang = 0
        self.mask: torch.Tensor | None = None  # (B, T) float, 1 on counted tokens
        self.by_block: torch.Tensor | None = None  # (present blocks, B*T): row i = the mask of that block's tokens
        self.present: torch.Tensor | None = None
        self.n_tokens: torch.Tensor | None = None

    def begin(self, lang: int, mask: torch.Tensor, counted: torch.Tensor, blocks: torch.Tensor, n_blocks: int) -> None:
        """`mask`: every real token (cosine pools over these); `counted`: those the fire counts keep."""
        self.lang, self.mask = lang, mask.to(torch.float32)
        self.n_tokens = self.mask.sum(1, keepdim=True).clamp(min=1)
        # only the blocks this batch touches (<= batch size rows, not all n_blocks)
        self.present, inverse = torch.unique(blocks, return_inverse=True)
        onehot = torch.nn.functional.one_hot(inverse, len(self.present)).to(torch.float32)  # (B, present)
        self.by_block = (onehot.T[:, :, None] * counted.to(torch.float32)[None]).reshape(len(self.present), -1)

    def count(self, layer: int, fired: torch.Tensor) -> None:
        # (blocks, B*T) @ (B*T, I): a BLAS reduction, exact in fp32 for < 2^24 tokens per batch
        m = self.by_block.to(fired.device)
        counts = (m @ fired.reshape(m.shape[1], -1).to(torch.float32)).to(torch.int32)
        self.fires[layer][self.present.to(counts.device), self.lang] += counts

    def pool(self, layer: int, hidden: torch.Tensor) -> None:
        m = self.mask.to(hidden.device).unsqueeze(-1)
        self.pooled[self.lang][layer] = (hidden.to(torch.float32) * m).sum(1) / self.n_tokens.to(hidden.device)


def _neuron_hook(arch: Arch, model: nn.Module, i: int, stats: _Stats):
    """(module, hook kind, fn) that counts layer i's FFN neurons firing above the threshold."""
    thr = stats.threshold
    if not arch.spec.gated:  # the down projection's input is act(fc1 x)
        def pre(_m, args):
            stats.count(i, args[0] > thr)
        return arch.ffn_module(model, i, "down"), "pre", pre
    act = arch.act_module(model, i)
    raw = thr == 0 and _sign_preserving(act)
    width = arch.intermediate_size(model, i)
    fused = arch.spec.fused_gate_up

    def post(_m, _args, out):
        gate = out[..., :width] if fused else out  # phi3: gate is the first half of gate_up_proj
        stats.count(i, (gate > 0) if raw else (act(gate) > thr))
    return arch.ffn_module(model, i, "gate"), "post", post


def _hidden_hook(i: int, stats: _Stats):
    def post(_m, _args, out):
        stats.pool(i, out[0] if isinstance(out, tuple) else out)
    return post


@contextlib.contextmanager
def _hooked(model: nn.Module, arch: Arch, stats: _Stats, neurons: bool, cosine: bool) -> Iterator[None]:
    handles = []
    try:
        for i in range(arch.num_layers):
            if neurons:
                module, kind, fn = _neuron_hook(arch, model, i, stats)
                reg = module.register_forward_pre_hook if kind == "pre" else module.register_forward_hook
                handles.append(reg(fn))
            if cosine:
                handles.append(arch.layer(model, i).register_forward_hook(_hidden_hook(i, stats)))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class Counts:
    """What one pass measured, per block of parallel problems (see the module doc).

    fires[layer]: (blocks, langs, width) counts of tokens on which each neuron fired; tokens: (blocks,
    langs) counted tokens; sim: (blocks, langs, langs, layers) sums of question-level cosine
    similarities between the token-mean hidden states of two languages' versions of a question;
    questions: (blocks,) questions per block."""

    fires: list[np.ndarray]
    tokens: np.ndarray
    sim: np.ndarray
    questions: np.ndarray
    widths: list[int]
    raw_tokens: np.ndarray
    """(langs,) tokens before balancing."""

    @property
    def probs(self) -> list[np.ndarray]:
        """Per layer (langs, width): activation probability of each neuron over all blocks."""
        tok = self.tokens.sum(axis=0)[:, None]
        return [f.sum(axis=0) / np.maximum(tok, 1) for f in self.fires]


def _token_counts(tokenizer: Any, langs: Sequence[str], texts: dict[str, list[str]], max_length: int) -> np.ndarray:
    out = np.zeros(len(langs), dtype=np.int64)
    for li, lang in enumerate(langs):
        enc = tokenizer(texts[lang], truncation=True, max_length=max_length, return_special_tokens_mask=True)
        out[li] = sum(len(m) - sum(m) for m in enc["special_tokens_mask"])
    return out


def collect(model: nn.Module, tokenizer: Any, langs: Sequence[str], texts: dict[str, list[str]], cfg: ProbeConfig,
            *, neurons: bool, cosine: bool, progress: bool = True) -> Counts:
    """Run every language's questions through the model, batch by batch, with the counting hooks on."""
    from slam.progress import progress as progress_bar

    arch = describe(model)
    n = len(next(iter(texts.values())))
    n_blocks = max(1, min(cfg.blocks, n))
    device = next(model.parameters()).device
    widths = [arch.intermediate_size(model, i) for i in range(arch.num_layers)]
    stats = _Stats(n_blocks, len(langs), widths, device, cfg.threshold, neurons, cosine)
    raw = _token_counts(tokenizer, langs, texts, cfg.max_length)
    if (raw == 0).any():
        empty = [lang for lang, t in zip(langs, raw, strict=True) if t == 0]
        raise SlamError(f"no countable tokens for {', '.join(empty)}: questions empty or only special tokens")
    keep = raw.min() / raw if cfg.balance_tokens else np.ones(len(langs))
    tokens = np.zeros((n_blocks, len(langs)), dtype=np.int64)
    sim = np.zeros((n_blocks, len(langs), len(langs), arch.num_layers), dtype=np.float64)
    per_block = np.bincount(np.arange(n) % n_blocks, minlength=n_blocks)
    body = getattr(model, "base_model", model)  # the decoder stack only: logits are not needed
    # batches of similar length waste less on padding (sums are order-independent)
    order = sorted(range(n), key=lambda i: (sum(len(texts[lg][i]) for lg in langs), i))
    chunks = [order[s:s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
    was_training = model.training
    model.eval()
    bar = progress_bar(len(chunks) * len(langs), "probe", "batch", enabled=progress)  # ETA lines off a terminal
    try:
        with torch.no_grad(), _hooked(model, arch, stats, neurons, cosine):
            for chunk in chunks:
                blocks = torch.tensor([i % n_blocks for i in chunk])
                for li, lang in enumerate(langs):
                    # right padding: real tokens keep positions 0..n-1 and never attend to pads, so
                    # absolute-position models (gpt2) give the same activations at any batch size
                    enc = tokenizer([texts[lang][i] for i in chunk], return_tensors="pt", padding=True,
                                    padding_side="right", truncation=True, max_length=cfg.max_length,
                                    return_special_tokens_mask=True)
                    mask = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
                    counted = mask
                    if keep[li] < 1:  # token balance: a seeded thinning of the longer-tokenized languages
                        counted = mask & _thinning(mask.shape, chunk, li, keep[li], cfg.seed)
                    stats.begin(li, mask.to(device), counted.to(device), blocks.to(device), n_blocks)
                    body(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                         use_cache=False)
                    np.add.at(tokens[:, li], blocks.numpy(), counted.sum(1).numpy())
                    bar.update(1)
                if cosine:  # compare each question's versions in every language pair, then forget the vectors
                    _pairwise_similarity(stats, sim, blocks.numpy(), len(langs), arch.num_layers)
    finally:
        bar.close()
        model.train(was_training)
    if (tokens.sum(axis=0) == 0).any():
        empty = [lang for lang, t in zip(langs, tokens.sum(axis=0), strict=True) if t == 0]
        raise SlamError(f"no countable tokens for {', '.join(empty)}: questions empty or only special tokens")
    fires = [f.cpu().numpy().astype(np.int64) for f in stats.fires]
    return Counts(fires=fires, tokens=tokens, sim=sim, questions=per_block, widths=widths, raw_tokens=raw)


def _thinning(shape: tuple[int, int], chunk: list[int], lang: int, keep: float, seed: int) -> torch.Tensor:
    """Which token positions to keep, drawn per (question, language) so the draw is the same at any batch size."""
    rows = [torch.rand(shape[1], generator=torch.Generator().manual_seed(seed * 1_000_003 + q * 101 + lang)) < keep
            for q in chunk]
    return torch.stack(rows)


def _pairwise_similarity(stats: _Stats, sim: np.ndarray, blocks: np.ndarray, n_langs: int, n_layers: int) -> None:
    for layer in range(n_layers):
        pooled = torch.stack([stats.pooled[li][layer] for li in range(n_langs)])  # (langs, B, H)
        unit = nn.functional.normalize(pooled.to(torch.float64), dim=-1)
        pair = torch.einsum("lbh,mbh->blm", unit, unit).cpu().numpy()  # (B, langs, langs)
        np.add.at(sim[..., layer], blocks, pair)
