"""The probe, end to end: validate inputs, one counting pass, score each method, select k layers.

    reports = run_probes(model, tok, records, ProbeConfig(langs=["en", "de", "zh"], top_k=6), methods=["msd", "lape"])
    reports["msd"]["selected_layers"]          # the probe.json content of each method
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from slam.arch import describe
from slam.config import ProbeConfig, probe_problems
from slam.errors import SlamError
from slam.probe.calibrate import calibrate
from slam.probe.collect import collect, parallel_questions
from slam.probe.select import METHODS, SELECTIONS, choose, rank_layers

REPORT_VERSION = 2

log = logging.getLogger(__name__)


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


def check_probe_inputs(records: Sequence[Any], cfg: ProbeConfig, methods: Sequence[str],
                       num_layers: int | None = None) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Every input problem in one SlamError (before any model is loaded); returns parallel_questions()."""
    langs = list(cfg.langs) or None
    problems = [f"method must be one of {', '.join(METHODS)}, got {m!r}" for m in methods if m not in METHODS]
    if cfg.selection not in SELECTIONS:
        problems.append(f"selection must be one of {', '.join(SELECTIONS)}, got {cfg.selection!r}")
    if num_layers is not None and not 1 <= cfg.top_k <= num_layers:
        problems.append(f"top_k must be in 1..{num_layers} (the model's layer count), got {cfg.top_k}")
    if not 0 < cfg.fire_fraction <= 1:
        problems.append(f"fire_fraction must be in (0, 1], got {cfg.fire_fraction}")
    if cfg.batch_size < 1 or cfg.max_length < 1:
        problems.append("batch_size and max_length must be >= 1")
    problems += probe_problems(cfg)
    if langs is not None and len(set(langs)) < len(langs):
        problems.append(f"langs has duplicates: {', '.join(langs)}")
    if langs is not None and len(langs) < 2:
        problems.append(f"probing compares languages: need at least 2, got {', '.join(langs) or 'none'}")
    if langs and "en" not in langs and any(m in ("msd", "cosine") for m in methods):
        problems.append("methods msd and cosine compare every language with English: add 'en' to the languages")
    if problems:
        raise SlamError("; ".join(problems))
    langs, pids, texts = parallel_questions(records, langs, cfg.max_questions or None)
    if len(langs) < 2:
        raise SlamError(f"probing compares languages: need at least 2, got {', '.join(langs)}")
    if "en" not in langs and any(m in ("msd", "cosine") for m in methods):
        raise SlamError("methods msd and cosine compare every language with English: the data has no 'en'")
    return langs, pids, texts


def run_probe(model: nn.Module, tokenizer: Any, records: Sequence[Any], cfg: ProbeConfig | None = None,
              progress: bool = True) -> dict:
    """Probe `model` with parallel questions by cfg.method; the probe.json content."""
    cfg = cfg or ProbeConfig()
    return run_probes(model, tokenizer, records, cfg, methods=[cfg.method], progress=progress)[cfg.method]


def run_probes(model: nn.Module, tokenizer: Any, records: Sequence[Any], cfg: ProbeConfig | None = None, *,
               methods: Sequence[str] | None = None, progress: bool = True) -> dict[str, dict]:
    """One pass over the data, one report per method ({method: probe.json content})."""
    cfg = cfg or ProbeConfig()
    methods = list(methods or [cfg.method])
    arch = describe(model)
    langs, pids, texts = check_probe_inputs(records, cfg, methods, num_layers=arch.num_layers)
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise SlamError("the tokenizer has no pad token (load it with slam.models.load_tokenizer)")
    log.info("probing %d layers with %d parallel questions x %d languages (%s)", arch.num_layers, len(pids),
             len(langs), ", ".join(methods))
    counts = collect(model, tokenizer, langs, texts, cfg, neurons=any(m in ("msd", "lape") for m in methods),
                     cosine="cosine" in methods, progress=progress)
    common = {
        "version": REPORT_VERSION, "model_type": arch.model_type, "langs": langs, "num_layers": arch.num_layers,
        "widths": counts.widths, "selection": cfg.selection, "top_k": cfg.top_k, "threshold": cfg.threshold,
        "fire_fraction": cfg.fire_fraction,
        "params": {"max_questions": cfg.max_questions or None, "batch_size": cfg.batch_size,
                   "max_length": cfg.max_length, "lape_entropy_quantile": cfg.lape_entropy_quantile,
                   "lape_prob_quantile": cfg.lape_prob_quantile, "activation": cfg.activation,
                   "activation_quantile": cfg.activation_quantile, "activation_margin": cfg.activation_margin,
                   "balance_tokens": cfg.balance_tokens, "blocks": len(counts.questions),
                   "permutations": cfg.permutations, "rank_by": cfg.rank_by, "split_halves": cfg.split_halves,
                   "min_tau": cfg.min_tau, "min_overlap": cfg.min_overlap, "fallback": cfg.fallback, "seed": cfg.seed},
        "model_fingerprint": model_fingerprint(model),
        "data_fingerprint": data_fingerprint(langs, pids, texts),
    }
    reports = {}
    for method in methods:
        reports[method] = _report(method, counts, cfg, langs, common, len(pids))
    return reports


def _report(method: str, counts: Any, cfg: ProbeConfig, langs: list[str], common: dict, questions: int) -> dict:
    """One method's probe.json: calibrated scores, the probe's choice, stability, and what trains."""
    cal = calibrate(counts, method, cfg, langs)
    full, stab = cal["full"], cal["stability"]
    scores = [float(s) for s in cal["scores"]]
    if not all(np.isfinite(scores)) or not all(np.isfinite(full["raw"])):
        raise SlamError(f"probe scores are not finite ({scores}): the model produced NaN/inf activations")
    matrices = dict(full["matrices"])
    if method != "cosine":
        matrices["fire_rate"] = np.array([p.mean(axis=1) for p in counts.probs]).tolist()
    unstable = cfg.permutations > 0 and not stab["stable"] and cfg.fallback == "bottom-k"
    report = {"method": method, **common, "scores": scores, "ranking": rank_layers(scores),
              "raw_scores": [float(x) for x in full["raw"]],
              "null": {"mean": full["null_mean"].tolist(), "std": full["null_std"].tolist(),
                       "p_values": full["p"].tolist()},
              "probe_selected_layers": list(cal["chosen"]) if cfg.selection in ("top-k", "contiguous") else
              choose(scores, cfg.top_k, "top-k"),
              "stability": stab, "stable": bool(stab["stable"]), "warnings": list(stab["warnings"]),
              "fallback": "bottom-k" if unstable else None, "selected_layers": [],
              "stats": {"questions": questions, "tokens": dict(zip(langs, counts.tokens.sum(axis=0).tolist(), strict=True)),
                        "tokens_before_balance": dict(zip(langs, counts.raw_tokens.tolist(), strict=True)),
                        "matrices": matrices}}
    from slam.probe.select import select_layers

    report["selected_layers"] = select_layers(report, cfg.top_k, cfg.selection, seed=cfg.seed)
    if unstable and cfg.selection in ("top-k", "contiguous"):
        report["warnings"].append(f"probe unstable: training the paper's bottom-k {report['selected_layers']} "
                                  f"instead of the probe's {cfg.selection} {report['probe_selected_layers']}")
    for w in report["warnings"]:
        log.warning("probe (%s): %s", method, w)
    return report
