"""Build a SLAM training set from parallel questions + English chain-of-thought answers.

    examples, quarantine = make_examples(records, translation_ratio=1.0, seed=0)
    val_ids = split_by_problem({r.problem_id for r in records}, val_fraction=0.05, seed=0)
    write_dataset("s3://bucket/data/v1", {"train": [...], "val": [...]}, manifest={...})
    rows = read_examples("s3://bucket/data/v1", "train")

Two tasks, as in the official SLAM data: `cot` (question in language X -> English CoT ending in "The
answer is N.") and `translate` (X question -> its English original; QAlign's instruction). English
questions get `cot` examples too, so the model keeps its English. Splits are by problem_id: every
translation of a problem lands in the same split. Output dir: train.jsonl, val.jsonl (examples),
optional test.jsonl/probe.jsonl (Record JSONL), quarantine.jsonl, manifest.json; published
atomically (local rename or S3 objects + _SUCCESS).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from slam import storage
from slam.data.records import Record, to_jsonl
from slam.errors import SlamError
from slam.prompts import translation_instruction

FORMAT = "slam-dataset/1"
EXAMPLE_FIELDS = ("id", "problem_id", "lang", "task", "instruction", "response", "gold")


def make_examples(records: list[Record], *, translation_ratio: float = 1.0, seed: int = 0,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(examples, quarantine rows). The English side of a problem supplies the CoT and the translation target."""
    check_ratios(translation_ratio=translation_ratio)
    by_problem: dict[str, dict[str, Record]] = defaultdict(dict)
    for r in records:
        by_problem[r.problem_id][r.lang] = r
    cot: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    for pid in sorted(by_problem):
        group = by_problem[pid]
        en = group.get("en")
        for lang in sorted(group):
            r = group[lang]
            answer = r.answer or (en.answer if en else None)
            if not answer:
                quarantine.append({"reason": "no English chain-of-thought answer for this problem", **r.to_dict()})
                continue
            cot.append(_example(r, "cot", r.question, answer))
            if lang == "en":
                continue
            if en is None:
                quarantine.append({"reason": "no English question to build the translation example", **r.to_dict()})
                continue
            candidates.append(_example(r, "translate", translation_instruction(r.question, lang), en.question))
    k = round(translation_ratio * len(candidates))
    chosen = set(random.Random(seed).sample(range(len(candidates)), k)) if k < len(candidates) else None
    translate = [c for i, c in enumerate(candidates) if chosen is None or i in chosen]
    examples = cot + translate
    random.Random(seed + 1).shuffle(examples)  # mixed tasks/languages within every batch
    return examples, quarantine


def _example(r: Record, task: str, instruction: str, response: str) -> dict[str, Any]:
    return {"id": f"{r.id}-{task}", "problem_id": r.problem_id, "lang": r.lang, "task": task,
            "instruction": instruction, "response": response, "gold": r.gold}


def check_ratios(*, translation_ratio: float = 1.0, val_fraction: float = 0.0) -> None:
    """The build's two shares, checked before any data is read (all problems in one message)."""
    problems = []
    if not (math.isfinite(translation_ratio) and 0 <= translation_ratio <= 1):
        problems.append(f"translation ratio must be in [0, 1] (translate examples per non-English cot example; "
                        f"there is one translation per question), got {translation_ratio}")
    if not (math.isfinite(val_fraction) and 0 <= val_fraction < 1):
        problems.append(f"val fraction must be in [0, 1) (the share of problems held out), got {val_fraction}")
    if problems:
        raise SlamError("; ".join(problems))


def split_by_problem(problem_ids: set[str] | list[str], val_fraction: float, seed: int) -> set[str]:
    """The problem_ids held out for validation (all their languages go together)."""
    check_ratios(val_fraction=val_fraction)
    ids = sorted(set(problem_ids))
    if not ids:
        return set()
    n_val = math.ceil(len(ids) * val_fraction) if val_fraction > 0 else 0
    n_val = min(n_val, len(ids) - 1)  # keep at least one training problem
    random.Random(seed).shuffle(ids)
    return set(ids[:n_val])


def counts(examples: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, Counter[str]] = defaultdict(Counter)
    for e in examples:
        by[e["lang"]][e["task"]] += 1
    return {"total": len(examples), "problems": len({e["problem_id"] for e in examples}),
            "by_lang": {lang: dict(sorted(c.items())) for lang, c in sorted(by.items())}}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_dataset(out: str, examples: dict[str, list[dict[str, Any]]], manifest: dict[str, Any], *,
                  records: dict[str, list[Record]] | None = None,
                  quarantine: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write splits + manifest to `out` (local dir or s3:// URI) all at once; returns the full manifest."""
    manifest = {"format": FORMAT, **manifest,
                "counts": {split: counts(rows) for split, rows in examples.items()}}
    if records:
        manifest["records"] = {split: dict(sorted(Counter(r.lang for r in recs).items()))
                               for split, recs in records.items()}
    manifest["quarantined"] = len(quarantine or [])
    with tempfile.TemporaryDirectory(prefix="slam-data-") as tmp:
        d = Path(tmp) / "ds"
        d.mkdir()
        for split, rows in examples.items():
            (d / f"{split}.jsonl").write_text(
                "".join(json.dumps({k: e[k] for k in EXAMPLE_FIELDS}, ensure_ascii=False) + "\n" for e in rows),
                encoding="utf-8")
        for split, recs in (records or {}).items():
            (d / f"{split}.jsonl").write_text(to_jsonl(recs), encoding="utf-8")
        if quarantine:
            (d / "quarantine.jsonl").write_text(
                "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine), encoding="utf-8")
        (d / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        storage.publish_dir(d, out)
    return manifest


def read_examples(uri_dir: str, split: str) -> list[dict[str, Any]]:
    """Rows of `split`.jsonl in a built dataset dir (train/val: examples; test/probe: Record dicts)."""
    uri = storage.join(uri_dir, f"{split}.jsonl")
    if not storage.exists(uri):
        raise SlamError(f"no {split} split in {uri_dir} (expected {uri}; build it with `slam data build/synth`)")
    return storage.read_jsonl(uri)  # split on "\n" only: U+2028 occurs inside real questions


def trained_langs(manifest: dict[str, Any]) -> list[str] | None:
    """The languages a built data set trains on (None when the manifest does not say)."""
    if manifest.get("trained_langs") is not None:
        return list(manifest["trained_langs"])
    by_lang = ((manifest.get("counts") or {}).get("train") or {}).get("by_lang")
    return sorted(by_lang) if by_lang else None


def read_manifest(uri_dir: str) -> dict[str, Any]:
    return storage.read_json(storage.join(uri_dir, "manifest.json"))
