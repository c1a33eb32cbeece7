"""Architecture adapter: where a Hugging Face causal LM keeps its decoder layers and FFN projections.

    from slam.arch import describe
    arch = describe(model)                 # works on a real model or one built on the meta device
    arch.num_layers, arch.ffn_module(model, layer=3, role="up"), arch.param_prefix(layer=3)

SLAM tunes FFN sub-layers by role: `gate`, `up`, `down`. Non-gated FFNs (gpt2, opt, gpt_neox, falcon,
bloom) have `up` (fc1) and `down` (fc2) only. phi3 fuses gate and up into one `gate_up_proj`: role
`up` (or `gate`) selects the fused tensor, and plans say so.

Adding an architecture = one `ArchSpec` row in `SPECS` plus a row in tests/test_arch.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slam.errors import SlamError


@dataclass(frozen=True)
class ArchSpec:
    model_types: tuple[str, ...]
    layers: tuple[str, ...]
    """Candidate dotted paths of the decoder-layer ModuleList (first one present wins)."""
    ffn: dict[str, str]
    """role -> module path relative to a decoder layer."""
    act: str
    """Activation module path relative to a decoder layer (applied to gate, or to fc1's output)."""
    attention: str
    gated: bool = True
    fused_gate_up: bool = False


_LLAMA_LIKE = dict(
    layers=("model.layers", "model.language_model.layers"),
    ffn={"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"},
    act="mlp.act_fn",
    attention="self_attn",
)

SPECS: tuple[ArchSpec, ...] = (
    ArchSpec(model_types=("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
                          "olmo", "olmo2", "granite", "smollm3"), **_LLAMA_LIKE),
    ArchSpec(model_types=("phi3",), layers=("model.layers",),
             ffn={"gate": "mlp.gate_up_proj", "up": "mlp.gate_up_proj", "down": "mlp.down_proj"},
             act="mlp.activation_fn", attention="self_attn", fused_gate_up=True),
    ArchSpec(model_types=("gpt_neox",), layers=("gpt_neox.layers",),
             ffn={"up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"}, act="mlp.act",
             attention="attention", gated=False),
    ArchSpec(model_types=("gpt2",), layers=("transformer.h",),
             ffn={"up": "mlp.c_fc", "down": "mlp.c_proj"}, act="mlp.act", attention="attn", gated=False),
    ArchSpec(model_types=("opt",), layers=("model.decoder.layers",),
             ffn={"up": "fc1", "down": "fc2"}, act="activation_fn", attention="self_attn", gated=False),
    ArchSpec(model_types=("falcon",), layers=("transformer.h",),
             ffn={"up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"}, act="mlp.act",
             attention="self_attention", gated=False),
    ArchSpec(model_types=("bloom",), layers=("transformer.h",),
             ffn={"up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"}, act="mlp.gelu_impl",
             attention="self_attention", gated=False),
)

SUPPORTED = tuple(sorted({t for s in SPECS for t in s.model_types}))


def spec_for(model_type: str) -> ArchSpec:
    for s in SPECS:
        if model_type in s.model_types:
            return s
    raise SlamError(
        f"unsupported architecture {model_type!r} (supported: {', '.join(SUPPORTED)}); to add one, add an "
        f"ArchSpec row to slam/arch.py naming its decoder-layer list and FFN projections, plus a test row"
    )


def _get(root: nn.Module, path: str) -> nn.Module | None:
    node = root
    for part in path.split("."):
        if not hasattr(node, part):
            return None
        node = getattr(node, part)
    return node


@dataclass(frozen=True)
class Arch:
    """A spec bound to one model: resolved layer path and count."""

    spec: ArchSpec
    model_type: str
    layers_path: str
    num_layers: int

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.spec.ffn)

    def layer(self, model: nn.Module, i: int) -> nn.Module:
        return _get(model, self.layers_path)[i]

    def param_prefix(self, i: int) -> str:
        """'model.layers.3.' — the trailing dot is what keeps layer 1 from matching layer 10."""
        return f"{self.layers_path}.{i}."

    def module_prefix(self, i: int, role: str) -> str:
        if role == "attention":
            return f"{self.param_prefix(i)}{self.spec.attention}."
        if role == "full-layer":
            return self.param_prefix(i)
        if role not in self.spec.ffn:
            raise SlamError(
                f"role {role!r} does not exist in {self.model_type} (a non-gated FFN); "
                f"its FFN roles are: {', '.join(self.spec.ffn)}"
            )
        return f"{self.param_prefix(i)}{self.spec.ffn[role]}."

    def ffn_module(self, model: nn.Module, i: int, role: str) -> nn.Module:
        return _get(self.layer(model, i), self.spec.ffn[role])

    def act_module(self, model: nn.Module, i: int) -> nn.Module:
        return _get(self.layer(model, i), self.spec.act)

    def intermediate_size(self, model: nn.Module, i: int = 0) -> int:
        """FFN width (number of neurons) of layer i."""
        m = self.ffn_module(model, i, "down")
        if isinstance(m, nn.Linear):
            return m.in_features
        # gpt2 Conv1D keeps weight as (in, out)
        return m.weight.shape[0]


def describe(model: nn.Module) -> Arch:
    cfg = getattr(model, "config", None)
    model_type = getattr(getattr(cfg, "text_config", None), "model_type", None) if cfg is not None else None
    model_type = getattr(cfg, "model_type", None) if model_type is None or _get_type_ok(cfg) else model_type
    if model_type is None:
        raise SlamError(f"{type(model).__name__} has no config.model_type: not a Hugging Face model")
    spec = spec_for(model_type)
    for path in spec.layers:
        layers = _get(model, path)
        if isinstance(layers, nn.ModuleList):
            return Arch(spec=spec, model_type=model_type, layers_path=path, num_layers=len(layers))
    raise SlamError(f"{model_type}: could not find the decoder layers at any of {', '.join(spec.layers)}")


def _get_type_ok(cfg) -> bool:
    # Multimodal wrappers (gemma3) carry a text_config; plain configs may too. Prefer the outer type
    # whenever it is one we know.
    return any(cfg.model_type in s.model_types for s in SPECS)


def build_on_meta(config) -> nn.Module:
    """Instantiate a model from its config without allocating weights (plans for 70B cost nothing)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
