"""`slam probe` — rank the model's layers by language-specificity and select the ones SLAM tunes.

    slam probe --model ~/.cache/slam/models/smollm2-135m-instruct --data ../shared/data/mgsm \\
        --langs en,de,es,fr,ja,ru,sw,th,zh,bn --method msd --top-k 6 --out runs/probe
    slam plan --model ... --probe runs/probe/probe.json        # the selection feeds planning/training

--data: Record JSONL (e.g. `slam data synth`'s probe.jsonl), a dir holding probe.jsonl, or an MGSM dir
(mgsm_<lang>.tsv). --out: local dir or s3:// URI; gets probe.json, heatmap.png, scores.png, summary.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from slam.config import ProbeConfig, split_list
from slam.errors import SlamError


def register(sub: argparse._SubParsersAction) -> None:
    d = ProbeConfig()
    from slam.commands import command

    p = command(sub, "probe", help="find the language-specific layers (msd | lape | cosine) and select k of them",
                description="Runs parallel questions through the model, scores every layer's language-specificity "
                            "and selects k layers. Writes probe.json, heatmap.png (layer x language, selection "
                            "marked), scores.png and summary.md under --out.",
                examples=["slam probe --model pypi:smollm2 --data runs/w --langs en,de,zh --out runs/probe",
                          "slam probe --model $M --data ../shared/data/mgsm --method lape --top-k 6 --out s3://b/probe"])
    p.add_argument("--model", required=True, help="model: HF dir, s3://bucket/prefix, hf:org/name or pypi:smollm2")
    p.add_argument("--data", required=True, help="Record JSONL, a dir with probe.jsonl, or an MGSM dir (local/s3)")
    p.add_argument("--langs", default=",".join(d.langs), help="comma list, e.g. en,de,zh (default: all in the data)")
    p.add_argument("--method", default=d.method, choices=["msd", "lape", "cosine"],
                   help="msd: activation-share shift vs English; lape: language-specific neurons; cosine: hidden states")
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"layers to select (default {d.top_k})")
    p.add_argument("--selection", default=d.selection, choices=["top-k", "contiguous", "bottom-k", "random-k", "top-layers"],
                   help="top-k: the k best layers; contiguous: the best block of k adjacent layers; "
                        "bottom-k (the paper's recipe), random-k, top-layers: controls")
    p.add_argument("--activation", default=d.activation, choices=["neuron", "layer", "fixed"],
                   help="msd: when a neuron is activated for a language (default: above its cross-language mean)")
    p.add_argument("--permutations", type=int, default=d.permutations,
                   help=f"language-label shuffles for the null (default {d.permutations}; 0 = uncalibrated)")
    p.add_argument("--rank-by", default=d.rank_by, choices=["excess", "z", "raw"],
                   help="rank layers by excess over the null, its z-score, or the raw statistic")
    p.add_argument("--fallback", default=d.fallback, choices=["bottom-k", "none"],
                   help="what trains when the probe is unstable (default: the paper's bottom-k)")
    p.add_argument("--out", required=True, help="output dir or s3:// URI")
    p.add_argument("--threshold", type=float, default=d.threshold, help="a neuron fires when act > this")
    p.add_argument("--fire-fraction", type=float, default=d.fire_fraction,
                   help="p: activated for a language when firing on >= this share of its tokens")
    p.add_argument("--max-questions", type=int, default=d.max_questions, help="parallel questions per language")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="questions per forward pass")
    p.add_argument("--max-length", type=int, default=d.max_length, help="tokens per question (longer: truncated)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto = bf16 on GPU, fp32 on CPU")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_probe_records(uri: str, langs: list[str] | None) -> list[Any]:
    """Records from a Record JSONL file, a dir holding probe.jsonl, or an MGSM dir (local or s3://)."""
    from slam import storage
    from slam.data.loaders import load_mgsm, read_records

    with storage.local_copy(uri) as path:
        path = Path(path)
        if not path.is_dir():
            return read_records(str(path))
        if any(path.glob("mgsm_*.tsv")):
            return load_mgsm(str(path), langs)
        if (path / "probe.jsonl").is_file():
            return read_records(str(path / "probe.jsonl"))
        raise SlamError(f"{uri}: a directory without probe.jsonl or mgsm_<lang>.tsv files")


def run(args: argparse.Namespace) -> int:
    from slam import storage
    from slam.arch import describe
    from slam.models import load_for_planning, load_model_and_tokenizer, resolve_model
    from slam.probe import check_probe_inputs, run_probe
    from slam.probe.report import write_outputs

    langs = split_list(args.langs, "--langs")
    storage.check_output(args.out)  # before the model load and the probe pass
    cfg = ProbeConfig(method=args.method, langs=langs, top_k=args.top_k, selection=args.selection,
                      threshold=args.threshold, fire_fraction=args.fire_fraction, max_questions=args.max_questions,
                      batch_size=args.batch_size, max_length=args.max_length, activation=args.activation,
                      permutations=args.permutations, rank_by=args.rank_by, fallback=args.fallback)
    records = load_probe_records(args.data, langs or None)
    model_dir = resolve_model(args.model)
    # all input problems before the (slow) model load: the layer count comes from config.json alone
    num_layers = describe(load_for_planning(model_dir)).num_layers
    check_probe_inputs(records, cfg, [args.method], num_layers=num_layers)
    model, tok = load_model_and_tokenizer(model_dir, dtype=args.dtype, device=args.device)
    report = run_probe(model, tok, records, cfg, progress=not args.no_progress)
    write_outputs(report, args.out)
    print(f"selected layers ({report['method']}, {report['selection']}, k={report['top_k']}): "
          f"{','.join(map(str, report['selected_layers']))}")
    print(f"ranking: {' '.join(map(str, report['ranking']))}")
    s = report["stability"]
    if s["split_half_tau"]["mean"] is not None:
        print(f"stability: split-half tau {s['split_half_tau']['mean']:.2f}, overlap {s['split_half_overlap']['mean']:.1f}"
              f"/{s['k']}, leave-one-language-out min {s['lolo_min_overlap']}/{s['k']} -> "
              f"{'stable' if report['stable'] else 'NOT stable'}")
    for w in report["warnings"]:
        print(f"warning: {w}")
    print(f"wrote {args.out}")
    return 0
