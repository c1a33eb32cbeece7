"""Greedy answer generation: the one path shared by evaluation (slam.evaluate) and the served model
(slam.serving), so a registered model answers exactly as it was scored.

    completions, new_tokens = generate(model, tok, ["Wie viel ist 3 + 5?"], template="alpaca")

Batched with a KV cache and LEFT padding, so every prompt ends at the same position and the first new
token of every row is predicted from its own last prompt token. Prompts are sorted by length (longest
first) so a batch wastes little on padding and an out-of-memory shows up on the first batch.
The decoding loop is our own greedy one (`_greedy_batch`): the same forward calls and argmax as
`model.generate(do_sample=False)` (tests/test_eval.py checks the tokens are identical), but a row that has
finished (EOS, a stop string, the stop pattern) leaves the batch and its KV cache at once, so the rest of
the batch does not keep computing it, and only the last position's logits are computed. Models whose
generation config asks for logits processing (repetition penalty, banned words, ...) go through
`model.generate` (`_hf_batch`), which applies it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

from slam.errors import SlamError

# Text that starts a new turn of the template. A model that does not stop at EOS (any base model, and
# SmolLM2 with the Alpaca prompt) goes on to invent the next "### Instruction:" with new numbers in
# it; the protocol's "last number" would then score the invented problem. We stop generating there
# and cut the completion before it. The chat template ends a turn with a special token (EOS).
STOP_STRINGS = {"alpaca": ("### Instruction", "\n### Input"), "chat": ()}


def generate(model: Any, tokenizer: Any, instructions: Sequence[str], *, batch_size: int = 16,
             max_new_tokens: int = 160, template: str = "alpaca", progress: bool = False,
             stop_strings: Sequence[str] | None = None, stop_pattern: str | None = None) -> tuple[list[str], int]:
    """Greedy completions (in input order) for `instructions` wrapped in `template`, each cut before
    the first stop string (default: the template's STOP_STRINGS); also the number of tokens generated
    (EOS included, padding not). `stop_pattern`: a regex; a row stops once its completion matches it
    (e.g. a finished "The answer is N." sentence), so a batch does not wait on rambling rows."""
    import torch

    from slam.progress import progress as progress_bar
    from slam.prompts import encode_prompt

    stop_strings = STOP_STRINGS[template] if stop_strings is None else tuple(stop_strings)
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
    rx = re.compile(stop_pattern) if stop_pattern else None
    batch_fn = _greedy_batch if _plain_greedy(model) else _hf_batch
    bar = progress_bar(len(prompts), "generate", "q", enabled=progress)  # ETA lines off a terminal
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            with torch.inference_mode():
                rows = batch_fn(model, tokenizer, ids.to(device), mask.to(device), max_new_tokens=max_new_tokens,
                                eos_ids=eos_ids, pad_id=pad_id, stop_strings=stop_strings, rx=rx)
            for new, i in zip(rows, idx, strict=True):
                stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
                total_new += len(new) if stop is None else stop + 1
                # the EOS itself is not text (and may not be flagged special, e.g. a chat end-of-turn)
                out[i] = cut(tokenizer.decode(new[:stop], skip_special_tokens=True), stop_strings)
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out, total_new


def _greedy_batch(model: Any, tokenizer: Any, ids: Any, mask: Any, *, max_new_tokens: int, eos_ids: list[int],
                  pad_id: int, stop_strings: Sequence[str], rx: Any) -> list[list[int]]:
    """Greedy new tokens of each row of a left-padded batch, up to and including the token that ends it."""
    import torch

    fwd = inspect.signature(model.forward).parameters
    kw: dict[str, Any] = {"use_cache": True}
    if "logits_to_keep" in fwd:
        kw["logits_to_keep"] = 1
    pos = mask.cumsum(-1) - 1  # as model.generate computes positions from the mask
    pos.masked_fill_(mask == 0, 1)
    o = model(input_ids=ids, attention_mask=mask, **({"position_ids": pos} if "position_ids" in fwd else {}), **kw)
    cache, nxt, last = o.past_key_values, o.logits[:, -1].argmax(-1), pos[:, -1]
    gen: list[list[int]] = [[] for _ in range(ids.shape[0])]
    live = list(range(ids.shape[0]))  # batch row -> input row, for the rows still generating
    for step in range(max_new_tokens):
        keep = []
        for j, (r, t) in enumerate(zip(live, nxt.tolist(), strict=True)):
            gen[r].append(t)
            if not _finished(tokenizer, gen[r], t, eos_ids, stop_strings, rx):
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(live):  # finished rows leave the batch and the cache
            k = torch.tensor(keep, device=ids.device)
            cache.batch_select_indices(k)
            mask, last, nxt, live = mask[k], last[k], nxt[k], [live[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
        last = last + 1
        extra = {"position_ids": last[:, None]} if "position_ids" in fwd else {}
        o = model(input_ids=nxt[:, None], attention_mask=mask, past_key_values=cache, **extra, **kw)
        nxt = o.logits[:, -1].argmax(-1)
    return gen


def _finished(tokenizer: Any, gen: list[int], token: int, eos_ids: list[int], stop_strings: Sequence[str],
              rx: Any) -> bool:
    """EOS, or a stop string ending in the last token (the tail decoded: stop strings are a few tokens long)."""
    if token in eos_ids:
        return True
    if not stop_strings and rx is None:
        return False
    tail = tokenizer.decode(gen[-24:], skip_special_tokens=True)
    return any(s in tail for s in stop_strings) or bool(rx is not None and rx.search(tail))


def _hf_batch(model: Any, tokenizer: Any, ids: Any, mask: Any, *, max_new_tokens: int, eos_ids: list[int],
              pad_id: int, stop_strings: Sequence[str], rx: Any) -> list[list[int]]:
    """model.generate for models whose generation config processes logits; rows trimmed of the padding after
    their end. (Also the reference the greedy loop is tested against.)"""
    width = ids.shape[1]
    stop_kw: dict[str, Any] = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    if rx is not None:
        stop_kw["stopping_criteria"] = _pattern_stop(tokenizer, rx, width)
    gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                         pad_token_id=pad_id, eos_token_id=eos_ids, use_cache=True, temperature=None, top_p=None,
                         top_k=None, **stop_kw)
    rows = []
    for row in range(gen.shape[0]):
        new = gen[row, width:].tolist()
        stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
        n = len(new) if stop is None else stop + 1
        while stop is None and n > 0 and new[n - 1] == pad_id:  # finished by a stop string, then padded
            n -= 1
        rows.append(new[:n])
    return rows


# generation-config fields that make model.generate change the logits (greedy then differs from argmax)
_PROCESSING = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
               "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
               "forced_bos_token_id": None, "forced_eos_token_id": None, "min_length": 0, "min_new_tokens": None,
               "sequence_bias": None, "exponential_decay_length_penalty": None, "renormalize_logits": False,
               "cache_implementation": None}


def _plain_greedy(model: Any) -> bool:
    """True when model.generate(do_sample=False) would be a plain argmax over the logits with a dynamic cache."""
    gc = getattr(model, "generation_config", None)
    if gc is None or getattr(model.config, "is_encoder_decoder", False):
        return False
    return all(getattr(gc, k, d) in (d, None) for k, d in _PROCESSING.items())


def _pattern_stop(tokenizer: Any, rx: Any, width: int) -> Any:
    """A per-row stopping criterion: True for rows whose new text (the last 24 tokens) matches `rx`."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            tails = tokenizer.batch_decode(input_ids[:, max(width, input_ids.shape[1] - 24):], skip_special_tokens=True)
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
