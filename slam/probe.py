"""Layer probing: measure which decoder layers of *this* model handle language (the "S" in SLAM).

    from slam.probe import run_probe, select_layers
    report = run_probe(model, tok, records, method="msd", langs=["en", "de", "zh"], top_k=6)
    report["selected_layers"]                                  # -> slam plan / training
    select_layers(report, k=4, selection="contiguous")         # re-select for another k (training, Tune)

CLI: `slam probe --model PATH --data probe.jsonl --langs en,de,zh --method msd --top-k 6 --out runs/probe`.

Parallel questions (same problem_id in every language) go through the frozen model; forward hooks keep
streaming statistics only (per-neuron fire counts per language as int64 counters on the model's
device, or per-layer running cosine sums), so memory does not grow with the data. Methods:

- `msd` (SLAM, reconstructed): a neuron of layer l is *activated* for language L when its FFN
  intermediate activation act(gate x) (act(fc1 x) for non-gated FFNs) exceeds `threshold` on at least
  a share `fire_fraction` of L's tokens. Per layer and language: n = |A_L| / width and the overlap with
  English o = |A_L ∩ A_en| / |A_L ∪ A_en| (Jaccard: it drops whether L gains or loses neurons vs
  English). score_l = MSD_L(n) + MSD_L(o), MSD = mean squared deviation from the mean over languages.
- `lape` (Tang et al. 2024): per-neuron activation probability per language, normalised over
  languages; neurons whose entropy is in the lowest `lape_entropy_quantile` of all neurons (and whose
  probability exceeds the `lape_prob_quantile` quantile for some language) are language-specific;
  score_l = their count / width.
- `cosine`: per layer, cosine similarity of the token-mean hidden state (layer output) of each question
  with its English parallel; score_l = 1 - mean similarity (higher = more language-specific). It sees
  what the residual stream carries, so it is cumulative over depth, unlike the two neuron methods.

Special tokens (BOS, padding) are excluded from every statistic: they are the same in every language.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from slam.arch import Arch, describe
from slam.errors import SlamError

log = logging.getLogger(__name__)

METHODS = ("msd", "lape", "cosine")
SELECTIONS = ("top-k", "contiguous")
REPORT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Selection (shared interface: training and the Tune search re-select from a report's scores)


def rank_layers(scores: Sequence[float]) -> list[int]:
    """Layer indices, most language-specific first; ties go to the lower layer (deterministic)."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def select_layers(report: dict, k: int, selection: str = "top-k") -> list[int]:
    """The k layers to tune from a probe report's scores, ascending: the top-k, or the best block of k."""
    scores = report.get("scores") if isinstance(report, dict) else None
    if not scores:
        raise SlamError("probe report has no 'scores': not a probe.json written by `slam probe`")
    n = len(scores)
    problems = []
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        problems.append(f"k must be an integer in 1..{n} (the model has {n} layers), got {k!r}")
    if selection not in SELECTIONS:
        problems.append(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    if problems:
        raise SlamError("; ".join(problems))
    if selection == "top-k":
        return sorted(rank_layers(scores)[:k])
    sums = [sum(float(s) for s in scores[start:start + k]) for start in range(n - k + 1)]
    best = max(range(len(sums)), key=lambda s: (sums[s], -s))  # ties -> the lowest block
    return list(range(best, best + k))


# --------------------------------------------------------------------------------------------------
# Fingerprints


def model_fingerprint(model: nn.Module) -> str:
    """Hash of the config (minus volatile keys) and a sample of every tensor, rounded to bf16 so the
    same weights loaded as fp32 or bf16 give the same fingerprint."""
    cfg = model.config.to_dict() if hasattr(model, "config") else {}
    for key in ("transformers_version", "torch_dtype", "dtype", "_name_or_path", "_attn_implementation_autoset",
                "_commit_hash", "_attn_implementation_internal", "use_cache"):
        cfg.pop(key, None)
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, p in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(p.shape)}".encode())
        sample = p.detach().reshape(-1)[:16].to(torch.bfloat16).to(torch.float32).cpu().numpy()
        h.update(sample.tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(langs: Sequence[str], problem_ids: Sequence[str], texts: dict[str, list[str]]) -> str:
    rows = [[lang, pid, texts[lang][i]] for lang in langs for i, pid in enumerate(problem_ids)]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Data: parallel questions


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

    def __init__(self, n_langs: int, widths: list[int], device: torch.device, threshold: float,
                 neurons: bool, cosine: bool):
        self.threshold = threshold
        self.fires = [torch.zeros((n_langs, w), dtype=torch.int64, device=device) for w in widths] if neurons else []
        self.pooled: list[list[torch.Tensor | None]] = [[None] * len(widths) for _ in range(n_langs)] if cosine else []
        self.lang = 0
        self.mask: torch.Tensor | None = None  # (B, T) float, 1 on counted tokens
        self.n_tokens: torch.Tensor | None = None

    def begin(self, lang: int, mask: torch.Tensor) -> None:
        self.lang, self.mask = lang, mask.to(torch.float32)
        self.n_tokens = self.mask.sum(1, keepdim=True).clamp(min=1)

    def count(self, layer: int, fired: torch.Tensor) -> None:
        # (B*T) @ (B*T, I): a BLAS reduction, exact in fp32 for < 2^24 tokens per batch
        m = self.mask.to(fired.device).reshape(1, -1)
        self.fires[layer][self.lang] += (m @ fired.reshape(m.shape[1], -1).to(torch.float32)).reshape(-1).to(torch.int64)

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


# --------------------------------------------------------------------------------------------------
# Scores


def _msd(x: np.ndarray) -> np.ndarray:
    """Mean squared deviation over languages (axis 0)."""
    return ((x - x.mean(axis=0, keepdims=True)) ** 2).mean(axis=0)


def score_msd(probs: list[np.ndarray], en: int, fire_fraction: float) -> tuple[np.ndarray, dict]:
    """probs[layer]: (langs, width) activation probabilities -> per-layer scores and layer x lang matrices."""
    n_rows, o_rows = [], []
    for p in probs:
        active = p >= fire_fraction
        n_rows.append(active.mean(axis=1))
        inter = (active & active[en]).sum(axis=1)
        union = (active | active[en]).sum(axis=1)
        o_rows.append(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
    n, o = np.array(n_rows).T, np.array(o_rows).T  # (langs, layers)
    return _msd(n) + _msd(o), {"active": n.T.tolist(), "overlap_en": o.T.tolist()}


def score_lape(probs: list[np.ndarray], entropy_quantile: float, prob_quantile: float) -> tuple[np.ndarray, dict]:
    """Tang et al. 2024 (their `identify.py`), with a stable sort so ties resolve deterministically."""
    widths = [p.shape[1] for p in probs]
    allp = np.concatenate(probs, axis=1).T  # (neurons, langs)
    total = allp.sum(axis=1, keepdims=True)
    dist = np.divide(allp, total, out=np.zeros_like(allp), where=total > 0)
    entropy = -(dist * np.log(np.where(dist > 0, dist, 1.0))).sum(axis=1)
    flat = np.sort(allp.reshape(-1))
    bar = flat[max(0, round(len(flat) * prob_quantile) - 1)]
    entropy = np.where((allp > bar).any(axis=1), entropy, np.inf)  # never strongly active: not specific
    n_pick = min(max(1, round(len(entropy) * entropy_quantile)), int(np.isfinite(entropy).sum()))
    picked = np.argsort(entropy, kind="stable")[:n_pick]
    specific = np.zeros(allp.shape, dtype=bool)
    specific[picked] = allp[picked] > bar  # language(s) each picked neuron belongs to
    chosen = np.zeros(len(entropy), dtype=bool)
    chosen[picked] = True
    bounds = np.cumsum([0, *widths])
    scores = np.array([chosen[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    per_lang = [(specific[a:b].sum(axis=0) / (b - a)).tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return scores, {"specific": per_lang}


# --------------------------------------------------------------------------------------------------
# The probe


def check_probe_inputs(records: Sequence[Any], *, methods: Sequence[str], langs: Sequence[str] | None,
                       max_questions: int | None, selection: str = "top-k", fire_fraction: float = 0.01,
                       batch_size: int = 8, max_length: int = 256, top_k: int = 1,
                       num_layers: int | None = None) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Every input problem in one SlamError (before any model is loaded); returns parallel_questions()."""
    problems = [f"method must be one of {', '.join(METHODS)}, got {m!r}" for m in methods if m not in METHODS]
    if selection not in SELECTIONS:
        problems.append(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    if num_layers is not None and not 1 <= top_k <= num_layers:
        problems.append(f"top_k must be in 1..{num_layers} (the model's layer count), got {top_k}")
    if not 0 < fire_fraction <= 1:
        problems.append(f"fire_fraction must be in (0, 1], got {fire_fraction}")
    if batch_size < 1 or max_length < 1:
        problems.append("batch_size and max_length must be >= 1")
    if langs is not None and len(set(langs)) < len(langs):
        problems.append(f"langs has duplicates: {', '.join(langs)}")
    if langs is not None and len(langs) < 2:
        problems.append(f"probing compares languages: need at least 2, got {', '.join(langs) or 'none'}")
    if langs and "en" not in langs and any(m in ("msd", "cosine") for m in methods):
        problems.append("methods msd and cosine compare every language with English: add 'en' to the languages")
    if problems:
        raise SlamError("; ".join(problems))
    langs, pids, texts = parallel_questions(records, langs, max_questions)
    if len(langs) < 2:
        raise SlamError(f"probing compares languages: need at least 2, got {', '.join(langs)}")
    if "en" not in langs and any(m in ("msd", "cosine") for m in methods):
        raise SlamError("methods msd and cosine compare every language with English: the data has no 'en'")
    return langs, pids, texts


def run_probe(model: nn.Module, tokenizer: Any, records: Sequence[Any], *, method: str = "msd",
              **kwargs: Any) -> dict:
    """Probe `model` with parallel questions and return the probe.json content (see module docstring).
    Keyword arguments as for `run_probes`."""
    return run_probes(model, tokenizer, records, methods=[method], **kwargs)[method]


def run_probes(model: nn.Module, tokenizer: Any, records: Sequence[Any], *, methods: Sequence[str] = ("msd",),
               langs: Sequence[str] | None = None, top_k: int = 6, selection: str = "top-k",
               threshold: float = 0.0, fire_fraction: float = 0.01, max_questions: int | None = None,
               batch_size: int = 8, max_length: int = 256, lape_entropy_quantile: float = 0.01,
               lape_prob_quantile: float = 0.95, progress: bool = True) -> dict[str, dict]:
    """One pass over the data, one report per method ({method: probe.json content})."""
    arch = describe(model)
    langs, pids, texts = check_probe_inputs(
        records, methods=methods, langs=langs, max_questions=max_questions, selection=selection,
        fire_fraction=fire_fraction, batch_size=batch_size, max_length=max_length, top_k=top_k,
        num_layers=arch.num_layers)
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise SlamError("the tokenizer has no pad token (load it with slam.models.load_tokenizer)")

    neurons, cosine = any(m in ("msd", "lape") for m in methods), "cosine" in methods
    device = next(model.parameters()).device
    widths = [arch.intermediate_size(model, i) for i in range(arch.num_layers)]
    stats = _Stats(len(langs), widths, device, threshold, neurons, cosine)
    tokens = np.zeros(len(langs), dtype=np.int64)
    sim_sum = np.zeros((len(langs), arch.num_layers), dtype=np.float64)
    en = langs.index("en") if "en" in langs else 0
    body = getattr(model, "base_model", model)  # the decoder stack only: logits are not needed
    # batches of similar length waste less on padding (sums are order-independent)
    order = sorted(range(len(pids)), key=lambda i: (sum(len(texts[lg][i]) for lg in langs), i))
    chunks = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    log.info("probing %d layers with %d parallel questions x %d languages (%s)", arch.num_layers, len(pids),
             len(langs), ", ".join(methods))
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    bar = tqdm(total=len(chunks) * len(langs), desc="probe", unit="batch", disable=not progress)
    try:
        with torch.no_grad(), _hooked(model, arch, stats, neurons, cosine):
            for chunk in chunks:
                for li, lang in enumerate(langs):
                    # right padding: real tokens keep positions 0..n-1 and never attend to pads, so
                    # absolute-position models (gpt2) give the same activations at any batch size
                    enc = tokenizer([texts[lang][i] for i in chunk], return_tensors="pt", padding=True,
                                    padding_side="right", truncation=True, max_length=max_length,
                                    return_special_tokens_mask=True)
                    mask = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
                    stats.begin(li, mask.to(device))
                    body(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                         use_cache=False)
                    tokens[li] += int(mask.sum())
                    bar.update(1)
                if cosine:  # compare each question with its English parallel, then forget the vectors
                    for li in range(len(langs)):
                        for layer in range(arch.num_layers):
                            sim = nn.functional.cosine_similarity(stats.pooled[li][layer],
                                                                  stats.pooled[en][layer], dim=-1)
                            sim_sum[li, layer] += float(sim.sum())
    finally:
        bar.close()
        model.train(was_training)
    if (tokens == 0).any():
        empty = [lang for lang, t in zip(langs, tokens, strict=True) if t == 0]
        raise SlamError(f"no countable tokens for {', '.join(empty)}: questions empty or only special tokens")

    probs = [f.cpu().numpy().astype(np.float64) / tokens[:, None] for f in stats.fires]
    common = {
        "version": REPORT_VERSION, "model_type": arch.model_type, "langs": langs, "num_layers": arch.num_layers,
        "widths": widths, "selection": selection, "top_k": top_k, "threshold": threshold,
        "fire_fraction": fire_fraction,
        "params": {"max_questions": max_questions, "batch_size": batch_size, "max_length": max_length,
                   "lape_entropy_quantile": lape_entropy_quantile, "lape_prob_quantile": lape_prob_quantile},
        "model_fingerprint": model_fingerprint(model),
        "data_fingerprint": data_fingerprint(langs, pids, texts),
    }
    reports = {}
    for method in methods:
        matrices: dict[str, list] = {}
        if method == "cosine":
            sim = sim_sum / len(pids)  # (langs, layers)
            others = [li for li in range(len(langs)) if li != en]
            scores = 1.0 - sim[others].mean(axis=0)
            matrices["similarity_en"] = sim.T.tolist()
        else:
            matrices["fire_rate"] = np.array([p.mean(axis=1) for p in probs]).tolist()
            if method == "msd":
                scores, extra = score_msd(probs, en, fire_fraction)
            else:
                scores, extra = score_lape(probs, lape_entropy_quantile, lape_prob_quantile)
            matrices.update(extra)
        scores = [float(s) for s in scores]
        if not all(np.isfinite(scores)):
            raise SlamError(f"probe scores are not finite ({scores}): the model produced NaN/inf activations")
        report = {"method": method, **common, "scores": scores, "ranking": rank_layers(scores),
                  "selected_layers": [],
                  "stats": {"questions": len(pids), "tokens": dict(zip(langs, tokens.tolist(), strict=True)),
                            "matrices": matrices}}
        report["selected_layers"] = select_layers(report, top_k, selection)
        reports[method] = report
    return reports
