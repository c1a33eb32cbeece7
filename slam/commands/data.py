"""`slam data synth|build|validate` — make and check SLAM training data.

    slam data synth --out runs/data/synth --n-train 2000 --seed 0
    slam data build --out runs/data/real --shared-data ../shared/data
    slam data validate FILE [--format mgsm|msvamp|gsm8k|records|mathoctopus|generic] [--lang de]
"""

from __future__ import annotations

import argparse
import json


def _langs(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build, generate and validate multilingual reasoning data")
    dsub = p.add_subparsers(dest="data_command", metavar="<action>", required=True)

    s = dsub.add_parser("synth", help="generate the synthetic parallel word-problem world (demo data)")
    s.add_argument("--out", required=True, help="output dir or s3:// URI")
    s.add_argument("--langs", default=None, help="comma list (default: en,de,fr,es,ru,zh,ja,th,sw)")
    s.add_argument("--n-train", type=int, default=2000, help="training problems (each in every language)")
    s.add_argument("--n-val", type=int, default=100, help="validation problems")
    s.add_argument("--n-test", type=int, default=200, help="test problems (Record JSONL, for evaluation)")
    s.add_argument("--n-probe", type=int, default=64, help="parallel problems for layer probing")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--translation-ratio", type=float, default=1.0,
                   help="X->English translation examples per non-English cot example, 0..1")
    s.set_defaults(func=run_synth)


def _print_counts(manifest: dict) -> None:
    for split, c in manifest["counts"].items():
        per = ", ".join(f"{lang} {sum(t.values())}" for lang, t in c["by_lang"].items())
        print(f"{split}: {c['total']} examples from {c['problems']} problems ({per})")
    for split, c in manifest.get("records", {}).items():
        print(f"{split}: {sum(c.values())} records ({', '.join(f'{k} {v}' for k, v in c.items())})")


def run_synth(args: argparse.Namespace) -> int:
    import time

    from slam.data.synth import synth

    t0 = time.perf_counter()
    manifest = synth(args.out, langs=_langs(args.langs), n_train=args.n_train, n_val=args.n_val,
                     n_test=args.n_test, n_probe=args.n_probe, seed=args.seed,
                     translation_ratio=args.translation_ratio)
    _print_counts(manifest)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.2f}s")
    return 0


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)
