"""Prompt templates and tokenization with response-only loss.

    prompt = format_prompt(tok, "Janet has 3 apples…", template="alpaca")
    ex = encode_example(tok, instruction, response, template="alpaca", max_length=512)
    # ex["labels"] is -100 on every prompt token: the loss only sees the response

Templates: `alpaca` (the prompt MathOctopus/QAlign/SLAM evaluation uses, no CoT trigger) and `chat`
(the tokenizer's own chat template). Prompt and response are tokenized separately and concatenated,
so the prompt/response boundary is exact for any tokenizer.
"""

from __future__ import annotations

from typing import Any

from slam import langs

ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)
IGNORE_INDEX = -100


def translation_instruction(question: str, lang: str) -> str:
    """QAlign's X->English question-translation task (stage 1 there, half of SLAM's one-stage mix)."""
    return f"Translate the following sentences from {langs.name(lang)} to English.\n{question}"


def format_prompt(tokenizer: Any, instruction: str, template: str = "alpaca") -> str:
    if template == "alpaca":
        return ALPACA.format(instruction=instruction.strip())
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            from slam.errors import SlamError

            raise SlamError("prompt template 'chat' needs a tokenizer with a chat template; use 'alpaca'")
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction.strip()}], add_generation_prompt=True, tokenize=False
        )
    raise ValueError(f"unknown prompt template {template!r}")


def encode_prompt(tokenizer: Any, instruction: str, template: str = "alpaca") -> list[int]:
    text = format_prompt(tokenizer, instruction, template)
    # chat templates already contain BOS-like markers; alpaca relies on the tokenizer's own BOS
    return tokenizer(text, add_special_tokens=(template == "alpaca"))["input_ids"]


def encode_example(tokenizer: Any, instruction: str, response: str, template: str = "alpaca",
                   max_length: int = 1024) -> dict[str, list[int]] | None:
    """input_ids + labels (prompt masked). None when it does not fit in max_length (caller quarantines)."""
    prompt_ids = encode_prompt(tokenizer, instruction, template)
    sep = " " if template == "alpaca" else ""
    response_ids = tokenizer(sep + response.strip(), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    if len(prompt_ids) + len(response_ids) > max_length:
        return None
    return {
        "input_ids": prompt_ids + response_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + response_ids,
    }


def collate(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a training batch; padded positions get label -100 and attention 0."""
    import torch

    n = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        ids[i, :k] = torch.tensor(e["input_ids"])
        labels[i, :k] = torch.tensor(e["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
