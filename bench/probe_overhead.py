"""Probe overhead vs a plain forward pass over the same batches, and tokens/s (SmolLM2-135M on CPU).

    .venv/bin/python bench/probe_overhead.py                      # SmolLM2 (imported if needed), MGSM questions
    .venv/bin/python bench/probe_overhead.py --questions 8 --repeats 3 --threads 1   # on a busy shared box
    .venv/bin/python bench/probe_overhead.py --tiny                                 # no SmolLM2 needed

Times, per method, the whole `run_probe` (tokenisation + hooked forward + scoring) against the same
tokenisation + forward without hooks, of the decoder stack (what the probe runs) and of the full
model (with the LM head). Runs are interleaved and the best of --repeats is kept, because this
box is shared. Goal: probe / plain decoder forward <= 1.15.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from slam.config import ProbeConfig  # noqa: E402
from slam.probe import run_probe  # noqa: E402
from slam.probe.collect import parallel_questions  # noqa: E402


def plain(model, tok, texts, langs, batch_size, max_length, lm_head: bool) -> int:
    body = model if lm_head else model.base_model
    n = len(texts[langs[0]])
    tokens = 0
    with torch.no_grad():
        for s in range(0, n, batch_size):
            for lang in langs:
                enc = tok(texts[lang][s:s + batch_size], return_tensors="pt", padding=True, padding_side="right",
                          truncation=True, max_length=max_length, return_special_tokens_mask=True)
                body(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
                tokens += int(enc["attention_mask"].sum())
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--langs", default="en,de,zh,ru")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="msd,lape,cosine")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default); use 1 on a busy box")
    ap.add_argument("--tiny", action="store_true", help="a tiny random llama + synthetic text (no SmolLM2)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mgsm"))
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    langs = args.langs.split(",")

    if args.tiny:
        from slam.testing import tiny_model, tiny_tokenizer

        records = [{"lang": lg, "problem_id": str(i), "question": f"{lg} question number {i} " * 8}
                   for i in range(args.questions) for lg in langs]
        tok = tiny_tokenizer([r["question"] for r in records])
        model = tiny_model("llama", num_layers=8, vocab_size=len(tok), hidden_size=256, intermediate_size=1024)
        name = "tiny llama (8 x 256/1024)"
    else:
        from slam.data.loaders import load_mgsm
        from slam.models import import_smollm2, load_model_and_tokenizer

        path = import_smollm2()
        model, tok = load_model_and_tokenizer(path, device="cpu")
        records = load_mgsm(args.data, langs)
        name = "SmolLM2-135M-Instruct fp32"
    model.eval()
    _, _, texts = parallel_questions(records, langs, args.questions)
    print(f"{name} on {torch.get_num_threads()} CPU threads; {args.questions} questions x {len(langs)} languages, "
          f"batch {args.batch_size}")

    best: dict[str, float] = {}
    tokens = 0
    methods = args.methods.split(",")
    plain(model, tok, texts, langs, args.batch_size, args.max_length, False)  # warm-up
    for _ in range(args.repeats):
        for key in ["plain-decoder", "plain-full", *methods]:
            t0 = time.perf_counter()
            if key.startswith("plain"):
                tokens = plain(model, tok, texts, langs, args.batch_size, args.max_length, key == "plain-full")
            else:
                run_probe(model, tok, records, ProbeConfig(method=key, langs=langs, top_k=2, max_questions=args.questions,
                                                      batch_size=args.batch_size, max_length=args.max_length),
                          progress=False)
            best[key] = min(best.get(key, float("inf")), time.perf_counter() - t0)

    base = best["plain-decoder"]
    print(f"{'run':16s} {'seconds':>8s} {'tokens/s':>9s} {'vs decoder fwd':>15s} {'vs full fwd':>12s}")
    for key, t in best.items():
        print(f"{key:16s} {t:8.2f} {tokens / t:9.0f} {t / base:14.3f}x {t / best['plain-full']:11.3f}x")
    worst = max(best[m] / base for m in methods)
    print(f"worst probe overhead vs plain decoder forward: {worst:.3f}x (goal <= 1.15x: "
          f"{'met' if worst <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
