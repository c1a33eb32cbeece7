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
from slam.config import ProbeConfig
from slam.errors import SlamError
from slam.probe.collect import collect, parallel_questions
from slam.probe.scores import score_lape, score_msd
from slam.probe.select import METHODS, SELECTIONS, rank_layers, select_layers

REPORT_VERSION = 1

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
                   "lape_prob_quantile": cfg.lape_prob_quantile},
        "model_fingerprint": model_fingerprint(model),
        "data_fingerprint": data_fingerprint(langs, pids, texts),
    }
    en = langs.index("en") if "en" in langs else 0
    reports = {}
    for method in methods:
        scores, matrices = _score(method, counts, en, cfg)
        report = {"method": method, **common, "scores": scores, "ranking": rank_layers(scores),
                  "selected_layers": [],
                  "stats": {"questions": len(pids), "tokens": dict(zip(langs, counts.tokens.tolist(), strict=True)),
                            "matrices": matrices}}
        report["selected_layers"] = select_layers(report, cfg.top_k, cfg.selection)
        reports[method] = report
    return reports


def _score(method: str, counts: Any, en: int, cfg: ProbeConfig) -> tuple[list[float], dict[str, list]]:
    matrices: dict[str, list] = {}
    if method == "cosine":
        sim = counts.sim_sum / counts.questions  # (langs, layers)
        others = [li for li in range(sim.shape[0]) if li != en]
        scores = 1.0 - sim[others].mean(axis=0)
        matrices["similarity_en"] = sim.T.tolist()
    else:
        matrices["fire_rate"] = np.array([p.mean(axis=1) for p in counts.probs]).tolist()
        if method == "msd":
            scores, extra = score_msd(counts.probs, en, cfg.fire_fraction)
        else:
            scores, extra = score_lape(counts.probs, cfg.lape_entropy_quantile, cfg.lape_prob_quantile)
        matrices.update(extra)
    out = [float(s) for s in scores]
    if not all(np.isfinite(out)):
        raise SlamError(f"probe scores are not finite ({out}): the model produced NaN/inf activations")
    return out, matrices
