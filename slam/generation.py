"""Greedy answer generation: the one path shared by evaluation (slam.evaluate) and the served model
(slam.serving), so a registered model answers exactly as it was scored.

    completions, new_tokens = generate(model, tok, ["Wie viel ist 3 + 5?"], template="alpaca")

Batched with a KV cache and LEFT padding, so every prompt ends at the same position and the first new
token of every row is predicted from its own last prompt token. Prompts are sorted by length (longest
first) so a batch wastes little on padding and an out-of-memory shows up on the first batch.
"""

from __future__ import annotations

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
    stop_kw: dict[str, Any] = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
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
            if stop_pattern:
                stop_kw["stopping_criteria"] = _pattern_stop(tokenizer, stop_pattern, width)
            with torch.inference_mode():
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_ids,
                                     use_cache=True, temperature=None, top_p=None, top_k=None, **stop_kw)
            for row, i in enumerate(idx):
                new = gen[row, width:].tolist()
                stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
                # rows that finished early (EOS or a stop string) are padded after their end
                n = len(new) if stop is None else stop + 1
                while stop is None and n > 0 and new[n - 1] == pad_id:
                    n -= 1
                total_new += n
                # the EOS itself is not text (and may not be flagged special, e.g. a chat end-of-turn)
                out[i] = cut(tokenizer.decode(new[:stop], skip_special_tokens=True), stop_strings)
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out, total_new


def _pattern_stop(tokenizer: Any, pattern: str, width: int) -> Any:
    """A per-row stopping criterion: True for rows whose new text (the last 24 tokens) matches `pattern`."""
    import re

    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    rx = re.compile(pattern)

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
