"""Evaluation throughput of slam.generation.generate on SmolLM2, CPU: batched vs one question at a time,
and slam's decoding loop vs transformers' `model.generate` on the same batches.

    .venv/bin/python bench/eval_batching.py                       # 32 MGSM questions (8 langs x 4), 64 new tokens
    .venv/bin/python bench/eval_batching.py --n 16 --batch-size 16 --max-new-tokens 32 --threads 1
    .venv/bin/python bench/eval_batching.py --task synthetic --data runs/demo/storage/data/<hash> --n 48 \
        --batch-size 16 --max-new-tokens 96 --no-single    # loop vs generate where rows end at different lengths

Prints questions/s and new tokens/s of each mode, batched / one-at-a-time (goal >= 5x), slam's loop /
model.generate at the same batch size (continuous batching, shared-prefix prefill), and how many greedy
completions agree (they should all: left padding and the loop change no token; an fp32 near-tie could flip
a rare one). The modes run back to back on the same questions; rerun when the box is busy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_DATA = Path(os.environ.get("SLAM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def questions(task: str, data: str, n: int) -> list[str]:
    from slam import tasks

    langs = ["en", "de", "fr", "es", "ru", "zh", "ja", "sw"]
    per_lang = -(-n // len(langs))
    records = tasks.get(task).load(data, langs=langs if task != "synthetic" else None, limit=per_lang)
    return [r.question for r in records][:n]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="HF model dir (default: the imported SmolLM2-135M-Instruct)")
    p.add_argument("--task", default="mgsm", choices=["mgsm", "msvamp", "synthetic"])
    p.add_argument("--data", default="", help="task data dir (default: ../shared/data/<task>)")
    p.add_argument("--n", type=int, default=32, help="questions")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--no-single", action="store_true", help="skip the one-question-at-a-time mode (slow)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0 = torch default); 1 on an oversubscribed box, where spinning "
                        "OpenMP threads made generation ~8x slower in our runs")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from slam import generation
    from slam.generation import generate
    from slam.models import import_smollm2, load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(args.model or import_smollm2())
    qs = questions(args.task, args.data or str(DEFAULT_DATA / args.task), args.n)
    print(f"{len(qs)} {args.task} questions, max_new_tokens {args.max_new_tokens}, "
          f"torch threads {torch.get_num_threads()}, device {next(model.parameters()).device}")
    generate(model, tok, qs[:2], batch_size=2, max_new_tokens=4)  # warm-up (allocator, kernels)

    t0 = time.perf_counter()
    batched, tok_b = generate(model, tok, qs, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    t_batched = time.perf_counter() - t0
    real_loop = generation._supports_own_loop
    generation._supports_own_loop = lambda m: False  # transformers' generate, same batches
    t0 = time.perf_counter()
    hf, tok_hf = generate(model, tok, qs, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    t_hf = time.perf_counter() - t0
    generation._supports_own_loop = real_loop
    print(f"batch {args.batch_size:<8d}: {t_batched:7.1f} s  {len(qs) / t_batched:6.2f} q/s  "
          f"{tok_b / t_batched:7.1f} new tok/s  (slam's loop)")
    print(f"model.generate: {t_hf:7.1f} s  {len(qs) / t_hf:6.2f} q/s  {tok_hf / t_hf:7.1f} new tok/s  "
          f"(transformers, batch {args.batch_size})")
    print(f"slam's loop vs model.generate: {t_hf / t_batched:.2f}x   identical completions: "
          f"{sum(a == b for a, b in zip(batched, hf, strict=True))}/{len(qs)}")
    if args.no_single:
        return 0
    t0 = time.perf_counter()
    single, tok_s = [], 0
    for q in qs:
        out, k = generate(model, tok, [q], batch_size=1, max_new_tokens=args.max_new_tokens)
        single.append(out[0])
        tok_s += k
    t_single = time.perf_counter() - t0
    print(f"one at a time : {t_single:7.1f} s  {len(qs) / t_single:6.2f} q/s  {tok_s / t_single:7.1f} new tok/s")
    print(f"speed-up (questions/s): {t_single / t_batched:.2f}x   (goal >= 5x)")
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    print(f"identical greedy completions: {same}/{len(qs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
