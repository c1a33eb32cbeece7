"""`slam probe` — rank the model's layers by language-specificity and select the ones SLAM tunes.

    slam probe --model ~/.cache/slam/models/smollm2-135m-instruct --data ../shared/data/mgsm \\
        --langs en,de,es,fr,ja,ru,sw,th,zh,bn --method msd --top-k 6 --out runs/probe
    slam plan --model ... --probe runs/probe/probe.json        # the selection feeds planning/training

--data: Record JSONL (e.g. `slam data synth`'s probe.jsonl), a dir holding probe.jsonl, or an MGSM dir
(mgsm_<lang>.tsv). --out: local dir or s3:// URI; gets probe.json, heatmap.png, scores.png, summary.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slam.config import ProbeConfig
from slam.errors import SlamError


def register(sub: argparse._SubParsersAction) -> None:
    d = ProbeConfig()
    p = sub.add_parser("probe", help="find the language-specific layers (msd | lape | cosine) and select k of them")
    p.add_argument("--model", required=True, help="HF model dir")
    p.add_argument("--data", required=True, help="Record JSONL, a dir with probe.jsonl, or an MGSM dir (local/s3)")
    p.add_argument("--langs", default=",".join(d.langs), help="comma list, e.g. en,de,zh (default: all in the data)")
    p.add_argument("--method", default=d.method, choices=["msd", "lape", "cosine"])
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"layers to select (default {d.top_k})")
    p.add_argument("--selection", default=d.selection, choices=["top-k", "contiguous"])
    p.add_argument("--out", required=True, help="output dir or s3:// URI")
    p.add_argument("--threshold", type=float, default=d.threshold, help="a neuron fires when act > this")
    p.add_argument("--fire-fraction", type=float, default=d.fire_fraction,
                   help="p: activated for a language when firing on >= this share of its tokens")
    p.add_argument("--max-questions", type=int, default=d.max_questions, help="parallel questions per language")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--max-length", type=int, default=d.max_length, help="tokens per question (longer: truncated)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto = bf16 on GPU, fp32 on CPU")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_probe_records(uri: str, langs: list[str] | None) -> list[Any]:
    """Records from a Record JSONL file, a dir holding probe.jsonl, or an MGSM dir."""
    from slam import storage

    with storage.local_copy(uri) as path:
        path = Path(path)
        if path.is_dir():
            if any(path.glob("mgsm_*.tsv")):
                return _load_mgsm(path, langs)
            for name in ("probe.jsonl", "test.jsonl"):
                if (path / name).is_file():
                    return _read_jsonl(path / name)
            raise SlamError(f"{uri}: a directory without probe.jsonl or mgsm_<lang>.tsv files")
        return _read_jsonl(path)


def _load_mgsm(root: Path, langs: list[str] | None) -> list[Any]:
    try:
        from slam.data.loaders import load_mgsm
    except ImportError:  # the data package's loader is optional here; the TSV format is trivial
        load_mgsm = None
    if load_mgsm is not None:
        return load_mgsm(str(root), langs)
    records = []
    for f in sorted(root.glob("mgsm_*.tsv")):
        lang = f.stem.split("_", 1)[1]
        if langs and lang not in langs:
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines()):
            q = line.split("\t")[0]
            records.append({"lang": lang, "problem_id": f"mgsm-{i}", "question": q})
    return records


def _read_jsonl(path: Path) -> list[Any]:
    try:
        from slam.data.loaders import read_records
    except ImportError:
        read_records = None
    if read_records is not None:
        return read_records(str(path))
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SlamError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    return rows


def run(args: argparse.Namespace) -> int:
    from slam.models import load_model_and_tokenizer
    from slam.probe import run_probe
    from slam.probe_report import write_outputs

    langs = [x.strip() for x in args.langs.split(",") if x.strip()] or None
    records = load_probe_records(args.data, langs)
    model, tok = load_model_and_tokenizer(args.model, dtype=args.dtype, device=args.device)
    report = run_probe(model, tok, records, method=args.method, langs=langs, top_k=args.top_k,
                       selection=args.selection, threshold=args.threshold, fire_fraction=args.fire_fraction,
                       max_questions=args.max_questions or None, batch_size=args.batch_size,
                       max_length=args.max_length, progress=not args.no_progress)
    write_outputs(report, args.out)
    print(f"selected layers ({report['method']}, {report['selection']}, k={report['top_k']}): "
          f"{','.join(map(str, report['selected_layers']))}")
    print(f"ranking: {' '.join(map(str, report['ranking']))}")
    print(f"wrote {args.out}")
    return 0
