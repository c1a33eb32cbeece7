"""`slam evaluate` — per-language accuracy of a model (or base + SLAM delta) on MGSM, MSVAMP or synthetic.

    slam evaluate --model ~/.cache/slam/models/smollm2-135m-instruct --task synthetic --data runs/synth \\
        --limit 20 --max-new-tokens 96 --out runs/eval-base
    slam evaluate --model BASE --delta s3://bucket/run/delta --task mgsm --data s3://bucket/bench/mgsm \\
        --langs en,de,zh --out s3://bucket/run/eval
    slam evaluate --model BASE --task mgsm --data hf:juletxara/mgsm --limit 50 --out runs/eval   # online only
    slam evaluate --model BASE --task mgsm --data runs/real/test_mgsm.jsonl --out runs/eval       # a build's test split

Prints the per-language table and writes eval.json / eval.png / eval.md under --out (local or s3://).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slam.commands import command

    p = command(sub, "evaluate", help="per-language accuracy on MGSM / MSVAMP / the synthetic test set",
                description="Greedy generation with the Alpaca prompt, answer = the last number (the MathOctopus/"
                            "QAlign protocol). Prints the per-language table; writes eval.json (every question, "
                            "completion, prediction, gold), eval.png and eval.md under --out.",
                examples=["slam evaluate --model pypi:smollm2 --task synthetic --data runs/w --limit 20 --out runs/eval",
                          "slam evaluate --model BASE --delta s3://b/run/delta --task mgsm --langs en,de,zh --out runs/e"])
    p.add_argument("--model", required=True,
                   help="model: HF dir, s3://bucket/prefix, hf:org/name or pypi:smollm2 (the base when --delta is given)")
    p.add_argument("--delta", default=None, help="SLAM delta (path or URI) to apply on top of --model")
    p.add_argument("--task", required=True, choices=["mgsm", "msvamp", "synthetic"], help="benchmark")
    p.add_argument("--data", default="",
                   help="where the questions are: a dir or s3:// prefix of the benchmark's files (mgsm_<lang>.tsv, "
                        "test_<Language>.json), a test_<task>.jsonl from `slam data build`, hf:org/name "
                        "(online); synthetic: a `slam data synth` output dir")
    p.add_argument("--langs", default="", help="comma list of languages, e.g. en,de,zh (default: all in the task)")
    p.add_argument("--limit", type=int, default=None, help="questions per language (default: all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="questions generated together (default: 64 on CPU, 16 on a GPU)")
    p.add_argument("--max-new-tokens", type=int, default=0,
                   help="generation budget; 0 = the task's protocol value (MGSM 600, MSVAMP 300, synthetic 160)")
    p.add_argument("--prompt", choices=["alpaca", "chat"], default="alpaca",
                   help="prompt template: alpaca (the MathOctopus/QAlign/SLAM protocol) or the model's chat template")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weights dtype (auto = bf16 on GPU, fp32 on CPU)")
    p.add_argument("--out", required=True, help="output dir or s3:// prefix for eval.json, eval.png, eval.md")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slam.config import split_list
    from slam.errors import SlamError

    langs = split_list(args.langs)
    problems = []
    if args.limit is not None and args.limit < 1:
        problems.append(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size is not None and args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_new_tokens < 0:
        problems.append(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if not args.data:
        problems.append(f"--task {args.task} needs --data (a dir or s3:// prefix of its files, a test_<task>.jsonl, "
                        "hf:org/name; synthetic: a `slam data synth` output dir): slam does not guess data locations")
    if problems:
        raise SlamError("; ".join(problems))

    from slam import evaluate, tasks

    # Load the questions before the model: a bad --data/--langs fails in a second, not after loading weights.
    mod = tasks.get(args.task)
    data = args.data
    records = mod.load(data, langs=langs or None, limit=args.limit)

    model, tok = _load(args)
    report = evaluate.evaluate_model(model, tok, records, batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens or mod.MAX_NEW_TOKENS,
                                     template=args.prompt, progress=not args.no_progress,
                                     extract=mod.extract_answer)
    report["meta"].update({"task": args.task, "data": data, "limit": args.limit, "model": args.model,
                           "delta": args.delta})
    uris = evaluate.write_report(report, args.out)
    print(evaluate.markdown_table(report))
    m = report["meta"]
    print(f"\n{m['questions']} questions in {m['seconds']:.1f} s ({m['questions_per_s']} q/s); "
          f"report: {uris['json']}")
    return 0


def _load(args: argparse.Namespace):
    from slam.models import load_model_and_tokenizer, resolve_model

    if args.delta:
        from slam.delta import load_model_with_delta

        return load_model_with_delta(args.model, args.delta, dtype=args.dtype)
    return load_model_and_tokenizer(resolve_model(args.model), dtype=args.dtype)
