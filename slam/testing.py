"""Tiny random models and tokenizers built in-process (no downloads) for tests, benches and demos.

    model = tiny_model("llama", num_layers=4)        # any architecture in slam.arch.SUPPORTED
    tok = tiny_tokenizer(["some text", ...])        # byte-level BPE trained locally in ~0.1 s
"""

from __future__ import annotations

import torch

# Smallest sane sizes per architecture; keys are config attribute names.
_COMMON = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
               vocab_size=256, head_dim=8, pad_token_id=0, bos_token_id=1, eos_token_id=2)
TINY_OVERRIDES: dict[str, dict] = {
    "llama": _COMMON, "mistral": _COMMON, "qwen2": _COMMON, "qwen3": _COMMON,
    "gemma": _COMMON, "gemma2": _COMMON, "gemma3_text": {**_COMMON, "sliding_window": 16},
    "phi3": {k: v for k, v in _COMMON.items() if k != "head_dim"},
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=256,
                     bos_token_id=1, eos_token_id=2),
    "gpt2": dict(n_embd=32, n_inner=64, n_head=4, vocab_size=256, bos_token_id=1, eos_token_id=2),
    "opt": dict(hidden_size=32, ffn_dim=64, num_attention_heads=4, vocab_size=256, word_embed_proj_dim=32,
                pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "falcon": dict(hidden_size=32, num_attention_heads=4, vocab_size=256, bos_token_id=1, eos_token_id=2),
    "bloom": dict(hidden_size=32, n_head=4, vocab_size=256, bos_token_id=1, eos_token_id=2, pad_token_id=0),
}
TINY_ARCHS = tuple(TINY_OVERRIDES)


def tiny_config(model_type: str = "llama", num_layers: int = 2, **overrides):
    from transformers import AutoConfig

    kw = dict(TINY_OVERRIDES[model_type])
    layer_key = {"gpt2": "n_layer", "bloom": "n_layer"}.get(model_type, "num_hidden_layers")
    kw[layer_key] = num_layers
    kw.update(overrides)
    return AutoConfig.for_model(model_type, **kw)


def tiny_model(model_type: str = "llama", num_layers: int = 2, seed: int = 0, **overrides):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, num_layers, **overrides))
    return model.eval()


def tiny_tokenizer(texts: list[str] | None = None, vocab_size: int = 256):
    """Byte-level BPE trained on `texts`, wrapped as a PreTrainedTokenizerFast with pad/bos/eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = texts or ["Janet has 3 apples and buys 5 more. 3 + 5 = 8. The answer is 8."] * 4
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.padding_side = "left"
    return fast


def save_tiny(path, model_type: str = "llama", num_layers: int = 2, texts: list[str] | None = None,
              seed: int = 0, **overrides):
    """Write a tiny model + tokenizer as a normal HF dir (what CLI tests and pipelines consume)."""
    tok = tiny_tokenizer(texts)
    model = tiny_model(model_type, num_layers, seed=seed, vocab_size=max(len(tok), 256), **overrides)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
