"""The real-data SLAM training set: GSM8K train English CoT + QAlign X->English question translations.

    slam data build --out runs/data/real --shared-data ../shared/data
    manifest = build_real("../shared/data", "s3://bucket/data/real", langs=["de", "zh"])

QAlign's `train.en` lines are GSM8K train questions (same text after whitespace normalisation), so
each translated question is joined to its GSM8K problem by that text: it takes GSM8K's problem_id,
chain of thought (calculator annotations removed, ending "The answer is N.") and gold. Translated
questions whose English side matches no GSM8K train question are quarantined, like every other bad row.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from slam import storage
from slam.data.build import make_examples, sha256_file, split_by_problem, write_dataset
from slam.data.loaders import normalize_question, raw_gsm8k, raw_qalign
from slam.data.records import Record
from slam.data.validate import validate_rows

QALIGN_LANGS = ("de", "es", "fr", "ja", "ru", "sw", "zh")
GENERATOR = "slam.data.real/1"


def build_real(shared: str, out: str, *, langs: list[str] | None = None, translation_ratio: float = 1.0,
               val_fraction: float = 0.05, seed: int = 0, include_english: bool = True) -> dict[str, Any]:
    langs = [x for x in (langs or QALIGN_LANGS) if x != "en"]
    gsm_uri = storage.join(shared, "gsm8k", "train.jsonl")
    qalign_root = storage.join(shared, "qalign_gsmtrans")

    gsm = validate_rows(raw_gsm8k(gsm_uri), what="GSM8K train", require_answer=True)
    by_text = {normalize_question(r.question): r for r in gsm.records}
    qa = validate_rows(raw_qalign(qalign_root, langs), langs=langs, what="QAlign", require_gold=False)
    quarantine = [{**q, "stage": "gsm8k"} for q in gsm.quarantine] + [{**q, "stage": "qalign"} for q in qa.quarantine]

    english = {r.problem_id: r.question for r in qa.records if r.lang == "en"}
    records: list[Record] = list(gsm.records) if include_english else []
    used: set[tuple[str, str]] = set()
    for r in qa.records:
        if r.lang == "en":
            continue
        match = by_text.get(normalize_question(english.get(r.problem_id, "")))
        if match is None:
            quarantine.append({"reason": "unmatched", "detail": "English side matches no GSM8K train question",
                               "where": "", "row": r.to_dict(), "stage": "join"})
            continue
        if (match.problem_id, r.lang) in used:
            quarantine.append({"reason": "duplicate", "detail": f"second {r.lang} translation of {match.problem_id}",
                               "where": "", "row": r.to_dict(), "stage": "join"})
            continue
        used.add((match.problem_id, r.lang))
        records.append(dataclasses.replace(r, id=f"{match.problem_id}-{r.lang}", problem_id=match.problem_id,
                                           answer=match.answer, gold=match.gold, source="qalign+gsm8k"))
    if not include_english:  # English questions stay the translation targets, without English cot rows
        records += [dataclasses.replace(g, answer=None) for g in gsm.records]

    val_ids = split_by_problem({r.problem_id for r in records}, val_fraction, seed)
    examples = {}
    for split, keep in (("train", lambda p: p not in val_ids), ("val", lambda p: p in val_ids)):
        ex, q = make_examples([r for r in records if keep(r.problem_id)], translation_ratio=translation_ratio,
                              seed=seed)
        if not include_english:
            ex = [e for e in ex if e["lang"] != "en"]
            q = [x for x in q if x.get("lang") != "en"]
        examples[split] = ex
        quarantine += [{"reason": "no_pair", "detail": x.pop("reason"), "where": "", "row": x, "stage": "build"}
                       for x in q]
    sources = {}
    for uri in [gsm_uri] + [storage.join(qalign_root, "gsm8kinstruct_question", f"{x}-en", f"train.{s}")
                            for x in langs for s in (x, "en")]:
        with storage.local_copy(uri) as p:
            sources[_rel(uri, shared)] = sha256_file(Path(p))
    manifest = {"generator": GENERATOR, "seed": seed, "langs": ["en", *langs] if include_english else langs,
                "translation_ratio": translation_ratio, "val_fraction": val_fraction, "sources": sources,
                "validation": {"gsm8k": gsm.summary, "qalign": qa.summary},
                "quarantine_by_reason": _count(quarantine)}
    return write_dataset(out, examples, manifest, quarantine=quarantine)


def _rel(uri: str, root: str) -> str:
    return uri[len(str(root)):].lstrip("/") if uri.startswith(str(root)) else uri


def _count(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for q in rows:
        out[q["reason"]] = out.get(q["reason"], 0) + 1
    return dict(sorted(out.items()))
