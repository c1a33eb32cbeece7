"""Selective freezing: which tensors SLAM trains, as a pure function over parameter names.

    plan = make_plan(model, layers=[0, 1, 2, 3, 4, 5], roles=["up", "down"])
    apply_plan(model, plan)                     # requires_grad = name in plan.trainable; logs the count
    opt = AdamW(trainable_parameters(model))    # the optimizer only ever sees trainable tensors

Roles: `gate`, `up`, `down` (FFN projections; official SLAM code tunes up+down), `attention`,
`full-layer` (ablations), `embeddings` (input embeddings, optional).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from torch import nn

from slam.arch import describe
from slam.errors import SlamError

log = logging.getLogger(__name__)

ROLES = ("gate", "up", "down", "attention", "full-layer", "embeddings")
DEFAULT_ROLES = ("up", "down")


@dataclass(frozen=True)
class TensorEntry:
    name: str
    layer: int | None
    role: str
    numel: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    model_type: str
    num_layers: int
    layers: list[int]
    roles: list[str]
    tensors: list[TensorEntry]
    trainable: int
    total: int
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return {t.name for t in self.tensors}

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fraction"] = self.fraction
        return d

    def summary(self) -> str:
        return (f"SLAM plan: {self.model_type}, layers {format_layers(self.layers)} of {self.num_layers}, "
                f"roles {'+'.join(self.roles)}: {self.trainable:,} of {self.total:,} parameters trainable "
                f"({100 * self.fraction:.2f}%) in {len(self.tensors)} tensors")


def format_layers(layers: Iterable[int]) -> str:
    """[0,1,2,5] -> '0-2,5'."""
    xs = sorted(set(layers))
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(out) if out else "none"


def _unique_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    # named_parameters() already drops tied duplicates (lm_head tied to embeddings counts once).
    return list(model.named_parameters())


def make_plan(model: nn.Module, layers: Iterable[int], roles: Iterable[str] = DEFAULT_ROLES) -> Plan:
    """Pure: decide the trainable tensors; never touches requires_grad."""
    arch = describe(model)
    layers, roles = sorted(set(int(i) for i in layers)), list(dict.fromkeys(roles))
    problems = [f"unknown role {r!r} (valid: {', '.join(ROLES)})" for r in roles if r not in ROLES]
    bad = [i for i in layers if not 0 <= i < arch.num_layers]
    if bad:
        problems.append(f"layer {format_layers(bad)} out of range: {arch.model_type} has {arch.num_layers} "
                        f"layers (0-{arch.num_layers - 1})")
    if not roles:
        problems.append("no roles given")
    if problems:
        raise SlamError("; ".join(problems))

    notes: list[str] = []
    prefixes: list[tuple[str, int | None, str]] = []
    for r in roles:
        if r == "embeddings":
            continue
        for i in layers:
            prefixes.append((arch.module_prefix(i, r), i, r))
    if arch.spec.fused_gate_up and ({"gate", "up"} & set(roles)) and not {"gate", "up"} <= set(roles):
        notes.append(f"{arch.model_type} fuses gate and up into one gate_up_proj: role "
                     f"{'up' if 'up' in roles else 'gate'} trains the whole fused tensor (gate half included)")

    params = _unique_params(model)
    embed_ids: set[int] = set()
    if "embeddings" in roles:
        emb = model.get_input_embeddings()
        embed_ids = {id(p) for p in emb.parameters()}

    chosen: dict[str, TensorEntry] = {}
    for name, p in params:
        for prefix, i, r in prefixes:
            if name.startswith(prefix):
                chosen.setdefault(name, TensorEntry(name, i, r, p.numel(), tuple(p.shape)))
                break
        else:
            if id(p) in embed_ids:
                chosen[name] = TensorEntry(name, None, "embeddings", p.numel(), tuple(p.shape))
    if not chosen:
        raise SlamError(f"plan selects no tensors for layers {format_layers(layers)} and roles {roles}")
    tensors = [chosen[n] for n, _ in params if n in chosen]
    return Plan(
        model_type=arch.model_type, num_layers=arch.num_layers, layers=layers, roles=roles, tensors=tensors,
        trainable=sum(t.numel for t in tensors), total=sum(p.numel() for _, p in params), notes=notes,
    )


def full_plan(model: nn.Module) -> Plan:
    """Every parameter trainable (the full fine-tuning baseline)."""
    arch = describe(model)
    params = _unique_params(model)
    tensors = [TensorEntry(n, None, "all", p.numel(), tuple(p.shape)) for n, p in params]
    total = sum(t.numel for t in tensors)
    return Plan(arch.model_type, arch.num_layers, list(range(arch.num_layers)), ["all"], tensors, total, total)


def apply_plan(model: nn.Module, plan: Plan) -> int:
    """Freeze everything outside the plan; return (and log) the trainable parameter count."""
    names = plan.names
    missing = names - {n for n, _ in model.named_parameters()}
    if missing:
        raise SlamError(f"plan names tensors this model does not have: {sorted(missing)[:3]}")
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s", plan.summary())
    return n


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
