"""The training loss: response tokens only, from the final hidden states, in checkpointed chunks.

    loss = causal_lm_loss(engine_model, module, batch, chunked=True)
    use_chunked = pick_chunked_loss(module, first_batch, precision, zero_stage)   # checked, agreed by all ranks

HF's causal-LM loss materializes logits for every position (prompt and padding included) and keeps
their log-softmax for backward: on SmolLM2 (49k vocabulary, 576 hidden) that, not the weights or the
optimizer, sets the peak memory of both SLAM and full fine-tuning. We ask the model for its final
hidden states (and one position of logits), keep the response positions, and compute the loss in
checkpointed chunks: one chunk of logits is alive at a time, in forward and in backward.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

import torch

LOSS_CHUNK = 512
"""Response tokens per logits chunk: peak loss memory ~ 3 x LOSS_CHUNK x vocab x 4 bytes (300 MB at 49k)."""

log = logging.getLogger(__name__)


def chunked_loss_unsupported(module: torch.nn.Module) -> str | None:
    """Why the chunked loss would differ from the model's own for this model (None: it would not)."""
    cfg = getattr(module, "config", None)
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
        v = getattr(cfg, attr, None)
        if v not in (None, 1, 1.0):
            return f"config.{attr}={v} post-processes the logits"
    if "logits_to_keep" not in inspect.signature(module.forward).parameters:
        return "its forward() has no logits_to_keep"
    if module.get_output_embeddings() is None:
        return "it has no output embeddings"
    return None


def _ce_sum(head: torch.nn.Module, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(h).float(), y, reduction="sum")


def causal_lm_loss(model: Any, module: torch.nn.Module, batch: dict, chunked: bool) -> torch.Tensor:
    """Mean next-token loss over labelled (response) tokens; `model` may be a DDP/DeepSpeed wrapper of `module`."""
    if not chunked:
        return model(**batch).loss
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
                logits_to_keep=1)
    y = batch["labels"][:, 1:]
    keep = y != -100
    h, y = out.hidden_states[-1][:, :-1][keep], y[keep]
    head = module.get_output_embeddings()
    total = out.logits.float().sum() * 0.0  # keeps the graph connected even for a batch without labels
    for i in range(0, len(y), LOSS_CHUNK):
        if torch.is_grad_enabled():
            total = total + torch.utils.checkpoint.checkpoint(_ce_sum, head, h[i:i + LOSS_CHUNK], y[i:i + LOSS_CHUNK],
                                                              use_reentrant=False)
        else:
            total = total + _ce_sum(head, h[i:i + LOSS_CHUNK], y[i:i + LOSS_CHUNK])
    return total / max(len(y), 1)


def pick_chunked_loss(module: torch.nn.Module, batch: dict, precision: str, zero_stage: int = 0) -> bool:
    """Use the chunked loss when the model allows it and it equals the model's own loss on a real batch.

    Every rank checks the same batch with the same weights; the answer is agreed on (all ranks or none).
    """
    why = chunked_loss_unsupported(module)
    if zero_stage == 3:  # ZeRO-3 gathers weights only inside the engine's forward; the head is used outside it
        why = "ZeRO stage 3 partitions the output embeddings"
    if why is None:
        was_training = module.training
        module.eval()  # dropout would make the two losses differ
        with torch.no_grad(), torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16,
                                             enabled=precision == "bf16"):
            ref = float(module(**batch).loss)
            got = float(causal_lm_loss(module, module, batch, chunked=True))
        module.train(was_training)
        if not math.isclose(ref, got, rel_tol=2e-2 if precision == "bf16" else 1e-4):
            why = f"it gave {got:.5f} where the model's own loss is {ref:.5f}"
    from slam.train.engines import all_sum

    (agreed,) = all_sum([0.0 if why is None else 1.0])
    if agreed == 0:
        log.info("loss: response tokens only, in %d-token logits chunks (checked against the model's own)", LOSS_CHUNK)
        return True
    log.warning("loss: the model's own (full logits), not the chunked one: %s", why or "another rank disagreed")
    return False
