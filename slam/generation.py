"""Greedy answer generation: the one path shared by evaluation (slam.evaluate) and the served model
(slam.serving), so a registered model answers exactly as it was scored.

    completions, new_tokens = generate(model, tok, ["Wie viel ist 3 + 5?"], template="alpaca")

Batched with a KV cache and LEFT padding, so every prompt ends at the same position and the first new
token of every row is predicted from its own last prompt token. Prompts are sorted by length (longest
first) so a batch wastes little on padding and an out-of-memory shows up on the first batch.

The decoding loop is our own (`_stream`), not `model.generate`, and it does three things generate does
not: a row that is done (EOS, a stop string, the stop pattern) leaves the batch and the KV cache at once;
the freed places are refilled with the next prompts (continuous batching), so the batch stays full and
no row waits for the longest one; and the prompt prefix every question shares (the Alpaca header) is run
once and its keys/values copied to each row, instead of once per question. Padding goes between that
prefix and each question, masked, with positions counted over real tokens only, so each row sees what it
would see alone: the tokens are the ones `model.generate(do_sample=False)` picks (tests/test_eval.py,
per architecture; bench/vs_lm_eval.py on MGSM). Models whose cache is not a plain per-layer key/value
stack (sliding windows) are decoded batch by batch, still dropping finished rows; models that cannot
take the loop at all, or whose generation_config asks for logits processing (repetition penalty, ...),
go through `model.generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slam.errors import SlamError

# Rows decoded together when the caller does not say. On CPU a decode step costs about the same for 16
# rows as for 64 (it is bound by reading the weights), so more rows is nearly free: SmolLM2 on the demo's
# 144 synthetic questions, 2 cores: 235 s at 16, 156 s at 48, 142 s at 144, the same completions. On a GPU
# the KV cache of MGSM's 600-token answers on a 7B/13B model is what limits the batch.
DEFAULT_BATCH_SIZE = {"cpu": 64, "accelerator": 16}


def default_batch_size(model: Any) -> int:
    """Rows generated together for `model` when the caller leaves it open (DEFAULT_BATCH_SIZE)."""
    device = next(model.parameters()).device
    return DEFAULT_BATCH_SIZE["cpu" if device.type == "cpu" else "accelerator"]

# Text that starts a new turn of the template. A model that does not stop at EOS (any base model, and
# SmolLM2 with the Alpaca prompt) goes on to invent the next "### Instruction:" with new numbers in
# it; the protocol's "last number" would then score the invented problem. We stop generating there
# and cut the completion before it. The chat template ends a turn with a special token (EOS).
STOP_STRINGS = {"alpaca": ("### Instruction", "\n### Input"), "chat": ()}


def generate(model: Any, tokenizer: Any, instructions: Sequence[str], *, batch_size: int | None = None,
             max_new_tokens: int = 160, template: str = "alpaca", progress: bool = False,
             stop_strings: Sequence[str] | None = None, stop_pattern: str | None = None) -> tuple[list[str], int]:
    """Greedy completions (in input order) for `instructions` wrapped in `template`, each cut before
    the first stop string (default: the template's STOP_STRINGS); also the number of tokens generated
    (EOS included, padding not). `stop_pattern`: a regex; a row stops once its completion matches it
    (e.g. a finished "The answer is N." sentence), so a batch does not wait on rambling rows.
    `batch_size` None = `default_batch_size(model)`."""

    from slam.progress import progress as progress_bar
    from slam.prompts import encode_prompt

    stop_strings = STOP_STRINGS[template] if stop_strings is None else tuple(stop_strings)
    batch_size = default_batch_size(model) if batch_size is None else batch_size
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise SlamError("tokenizer has neither a pad nor an EOS token; cannot batch generation")
    eos_ids = _eos_ids(model, tokenizer)
    prompts = [encode_prompt(tokenizer, q, template) for q in instructions]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    device = next(model.parameters()).device
    out: list[str] = [""] * len(prompts)
    total_new = 0
    was_training = model.training
    model.eval()
    own_loop = _supports_own_loop(model)
    bar = progress_bar(len(prompts), "generate", "q", enabled=progress, concurrent=True)  # ETA lines off a terminal

    def finished(i: int, new: list[int]) -> None:
        nonlocal total_new
        stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
        total_new += len(new)
        # the EOS itself is not text (and may not be flagged special, e.g. a chat end-of-turn)
        out[i] = cut(tokenizer.decode(new[:stop], skip_special_tokens=True), stop_strings)
        bar.update(1)

    try:
        if own_loop:
            for i, new in _stream(model, tokenizer, prompts, order, batch_size=batch_size, pad_id=pad_id,
                                  max_new_tokens=max_new_tokens, eos_ids=eos_ids, stop_strings=stop_strings,
                                  stop_pattern=stop_pattern, device=device):
                finished(i, new)
        else:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                ids, mask = _left_pad([prompts[i] for i in idx], pad_id)
                news = _hf_generate(model, tokenizer, ids.to(device), mask.to(device), max_new_tokens, pad_id,
                                    eos_ids, stop_strings, stop_pattern)
                for i, new in zip(idx, news, strict=True):
                    finished(i, new)
    finally:
        bar.close()
        model.train(was_training)
    return out, total_new


# How many of a row's last tokens are decoded to look for a stop string or the stop pattern: longer than
# any stop string ("### Instruction" is 3-5 tokens) and than "The answer is -1,234.5." in any tokenizer.
_TAIL_TOKENS = 24
# Prompts are prefilled in groups whose padding is at most this share of their real tokens (prefill is
# compute-bound: a padded position costs as much as a real one).
_MAX_PAD_SHARE = 0.25
# A shared prompt prefix shorter than this is not worth a separate forward pass.
_MIN_PREFIX = 8


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, x in enumerate(seqs):
        if x:
            ids[row, width - len(x):] = torch.tensor(list(x))
            mask[row, width - len(x):] = 1
    return ids, mask


class _Batch:
    """The rows being decoded together: their KV cache, attention mask (cache columns + the token fed
    next), last position, the last token each generated (appended to its output, not yet fed), and which
    prompt each row is. Columns [0, prefix) hold the shared prompt prefix; padding sits right after it."""

    def __init__(self, cache: Any, mask: Any, pos: Any, nxt: Any, rows: list[int], prefix: int):
        self.cache, self.mask, self.pos, self.nxt, self.rows, self.prefix = cache, mask, pos, nxt, rows, prefix

    def select(self, keep: list[int]) -> None:
        import torch

        sel = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(sel)
        self.mask, self.pos, self.nxt = self.mask[sel], self.pos[sel], self.nxt[sel]
        self.rows = [self.rows[k] for k in keep]

    def widen(self, cols: int) -> None:
        """Insert `cols` masked columns right after the prefix (plain caches only)."""
        import torch

        p = self.prefix
        for layer in self.cache.layers:
            for name in ("keys", "values"):
                t = getattr(layer, name)
                gap = t.new_zeros((*t.shape[:2], cols, t.shape[3]))
                setattr(layer, name, torch.cat([t[:, :, :p], gap, t[:, :, p:]], dim=2))
        self.mask = torch.cat([self.mask[:, :p], self.mask.new_zeros((self.mask.shape[0], cols)),
                               self.mask[:, p:]], dim=1)

    def trim(self) -> None:
        """Drop the columns after the prefix that are padding in every row (left by rows that finished)."""
        p = self.prefix
        real = self.mask[:, p:].any(0).nonzero()
        k = int(real[0]) if len(real) else 0
        if k:
            for layer in self.cache.layers:
                layer.keys = _drop_cols(layer.keys, p, k)
                layer.values = _drop_cols(layer.values, p, k)
            self.mask = _drop_cols(self.mask, p, k, dim=1)

    def join(self, other: _Batch) -> None:
        """Append `other`'s rows (plain caches, same prefix)."""
        import torch

        wa, wb = self.mask.shape[1], other.mask.shape[1]
        if wa < wb:
            self.widen(wb - wa)
        elif wb < wa:
            other.widen(wa - wb)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        self.mask = torch.cat([self.mask, other.mask])
        self.pos = torch.cat([self.pos, other.pos])
        self.nxt = torch.cat([self.nxt, other.nxt])
        self.rows += other.rows


def _similar_lengths(lengths: list[int], items: list[int]) -> list[list[int]]:
    """Split `items` (sorted by length, longest first) into runs that pad little when prefilled together."""
    chunks: list[list[int]] = []
    width = real = 0
    for n, item in zip(lengths, items, strict=True):
        if chunks and width * (len(chunks[-1]) + 1) <= (1 + _MAX_PAD_SHARE) * (real + n):
            chunks[-1].append(item)
            real += n
        else:
            chunks.append([item])
            width = real = n
    return chunks


def _drop_cols(t: Any, start: int, n: int, dim: int = 2) -> Any:
    import torch

    return torch.cat([t.narrow(dim, 0, start), t.narrow(dim, start + n, t.shape[dim] - start - n)], dim=dim)


def _stream(model: Any, tokenizer: Any, prompts: list[list[int]], order: list[int], *, batch_size: int,
            pad_id: int, max_new_tokens: int, eos_ids: list[int], stop_strings: Sequence[str],
            stop_pattern: str | None, device: Any):
    """Greedy decoding of prompts[i] for i in `order` (longest first); yields (i, new tokens up to and
    including the EOS or the token that completed a stop string / the pattern) as rows finish."""
    import re

    import torch

    rx = re.compile(stop_pattern) if stop_pattern else None
    cache_kw, takes_positions = _forward_kwargs(model)
    eos = torch.tensor(eos_ids, device=device)
    news: dict[int, list[int]] = {}

    def forward(ids: Any, mask: Any, pos: Any, cache: Any) -> Any:
        kw = {"position_ids": pos} if takes_positions else {}
        return model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1, **{cache_kw: cache},
                     **kw).logits[:, -1, :].argmax(-1)

    plain = _plain_cache(model)
    prefix_len = _shared_prefix(prompts) if plain and takes_positions and len(order) > 1 else 0
    prefix_kv = None
    if prefix_len:
        cache = _new_cache(model)
        ids = torch.tensor([prompts[order[0]][:prefix_len]], device=device)
        with torch.inference_mode():
            forward(ids, torch.ones_like(ids), torch.arange(prefix_len, device=device)[None], cache)
        prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]

    def prefill(idx: list[int]) -> _Batch:
        ids, smask = _left_pad([prompts[i][prefix_len:] for i in idx], pad_id)
        ids, smask = ids.to(device), smask.to(device)
        cache = _new_cache(model)
        mask = torch.cat([smask.new_ones((len(idx), prefix_len)), smask], dim=1)
        for layer_idx, (k, v) in enumerate(prefix_kv or ()):
            cache.update(k.expand(len(idx), -1, -1, -1).contiguous(), v.expand(len(idx), -1, -1, -1).contiguous(),
                         layer_idx)
        # positions over real tokens only, as generate computes them from the mask
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        with torch.inference_mode():
            nxt = forward(ids, mask, pos[:, prefix_len:], cache)
        return _Batch(cache, mask, pos[:, -1:], nxt, list(idx), prefix_len)

    def settle(batch: _Batch, first: int = 0):
        """Record the newest token of rows first.. (the others' is recorded); yield and drop the rows done."""
        done = torch.isin(batch.nxt, eos).tolist()
        for row, (i, t) in enumerate(zip(batch.rows, batch.nxt.tolist(), strict=True)):
            if row < first:
                continue
            new = news.setdefault(i, [])
            new.append(t)
            if not done[row] and (len(new) >= max_new_tokens
                                  or ((stop_strings or rx) and _stops(tokenizer, new, stop_strings, rx))):
                done[row] = True
            if done[row]:
                yield i, news.pop(i)
        if any(done):
            batch.select([row for row, d in enumerate(done) if not d])
            if batch.rows and plain:
                batch.trim()

    pending = list(order)
    batch: _Batch | None = None
    while pending or (batch is not None and batch.rows):
        room = batch_size - (len(batch.rows) if batch else 0)
        # refill once a quarter of the places is free (a prefill forward per freed row would read all the
        # weights once more for one row); a cache with sliding windows cannot take rows: decoded until empty
        if pending and (batch is None or not batch.rows or (plain and room >= max(1, batch_size // 4))):
            take, pending = pending[:room], pending[room:]
            chunks = _similar_lengths([len(prompts[i]) - prefix_len for i in take], take) if plain else [take]
            for chunk in chunks:
                fresh = prefill(chunk)
                if batch is not None and batch.rows:
                    first = len(batch.rows)
                    batch.join(fresh)
                    yield from settle(batch, first)
                else:
                    batch = fresh
                    yield from settle(batch)
            continue
        assert batch is not None
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)
        batch.pos = batch.pos + 1
        with torch.inference_mode():
            batch.nxt = forward(batch.nxt[:, None], batch.mask, batch.pos, batch.cache)
        yield from settle(batch)


def _stops(tokenizer: Any, new: list[int], stop_strings: Sequence[str], rx: Any) -> bool:
    tail = tokenizer.decode(new[-_TAIL_TOKENS:], skip_special_tokens=True)
    return any(s in tail for s in stop_strings) or bool(rx and rx.search(tail))


def _forward_params(model: Any) -> Any:
    import inspect

    return inspect.signature(model.forward).parameters


def _forward_kwargs(model: Any) -> tuple[str, bool]:
    """(the name the model's forward takes its KV cache under, whether it takes position_ids)."""
    params = _forward_params(model)
    return ("cache" if "cache" in params else "past_key_values"), "position_ids" in params


def _plain_cache(model: Any) -> bool:
    """Whether the model's cache is a growing key/value pair per layer (no sliding window), so rows of
    different lengths can be joined and padding columns inserted and removed."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(_new_cache(model), "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


# generation_config fields that make transformers' greedy generate change the logits (our loop takes the
# plain argmax, so a model that sets any of them is decoded by model.generate)
_LOGITS_FIELDS = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                  "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                  "forced_bos_token_id": None, "forced_eos_token_id": None, "min_length": 0, "min_new_tokens": None,
                  "sequence_bias": None, "exponential_decay_length_penalty": None, "renormalize_logits": False}


def _supports_own_loop(model: Any) -> bool:
    """Our loop needs a decoder-only model that takes a Cache and logits_to_keep (every architecture in
    slam.arch on the pinned transformers; tests/test_eval.py checks each against model.generate) and a
    generation_config that asks for no logits processing."""
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    gc = getattr(model, "generation_config", None)
    if gc is not None and any(getattr(gc, k, d) not in (d, None) for k, d in _LOGITS_FIELDS.items()):
        return False
    params = _forward_params(model)
    return ("cache" in params or "past_key_values" in params) and "logits_to_keep" in params


def _shared_prefix(prompts: list[list[int]]) -> int:
    """Length of the token prefix all prompts share (the template's header), leaving every prompt at least
    one token of its own; 0 when shorter than _MIN_PREFIX."""
    first, n = prompts[0], min(len(x) for x in prompts) - 1
    k = 0
    while k < n and all(x[k] == first[k] for x in prompts):
        k += 1
    return k if k >= _MIN_PREFIX else 0


def _hf_generate(model: Any, tokenizer: Any, ids: Any, mask: Any, max_new_tokens: int, pad_id: int,
                 eos_ids: list[int], stop_strings: Sequence[str], stop_pattern: str | None) -> list[list[int]]:
    """transformers' generate: each row's new tokens, without the padding after a row that finished early."""
    import torch

    kw: dict[str, Any] = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    if stop_pattern:
        kw["stopping_criteria"] = _pattern_stop(tokenizer, stop_pattern, ids.shape[1])
    with torch.inference_mode():
        gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=pad_id, eos_token_id=eos_ids, use_cache=True, temperature=None,
                             top_p=None, top_k=None, **kw)
    news = []
    for row in range(gen.shape[0]):
        new = gen[row, ids.shape[1]:].tolist()
        stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
        n = len(new) if stop is None else stop + 1
        while stop is None and n > 0 and new[n - 1] == pad_id:
            n -= 1
        news.append(new[:n])
    return news


def _pattern_stop(tokenizer: Any, pattern: str, width: int) -> Any:
    """A per-row stopping criterion: True for rows whose new text (the last _TAIL_TOKENS) matches `pattern`."""
    import re

    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    rx = re.compile(pattern)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            tails = tokenizer.batch_decode(input_ids[:, max(width, input_ids.shape[1] - _TAIL_TOKENS):], skip_special_tokens=True)
            return torch.tensor([bool(rx.search(t)) for t in tails], device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


def cut(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to the first stop string, stripped."""
    for s in stop_strings:
        k = text.find(s)
        if k >= 0:
            text = text[:k]
    return text.strip()


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends an answer: the tokenizer's EOS plus the model's (chat models often have
    an end-of-turn token besides end-of-text)."""
    ids: list[int] = []
    for v in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        for t in (v if isinstance(v, (list, tuple)) else [v]):
            if t is not None and t not in ids:
                ids.append(int(t))
    if not ids:
        raise SlamError("neither the tokenizer nor the model defines an EOS token; generation would never stop")
    return ids
