"""The real-data SLAM data set: GSM8K train English CoT + QAlign X->English question translations (+ your
own files), a parallel probe set and the benchmark test split(s), in one build.

    slam data build --shared-data ../shared/data --out runs/data/real --langs de,zh,sw,th
    manifest = build_real("s3://bucket/shared", "s3://bucket/data/real", langs=["de", "zh"], max_problems=200)
    build_real(shared, out, langs=["it"], user_files=[("s3://b/it.csv", {"question": "domanda",
               "english": "question", "lang": "=it"})])

QAlign's `train.en` lines are GSM8K train questions (same text after whitespace normalisation), so
each translated question is joined to its GSM8K problem by that text: it takes GSM8K's problem_id,
chain of thought (calculator annotations removed, ending "The answer is N.") and gold. A user's file
with an `english` column is joined the same way; its rows that match no GSM8K question need their own
`answer` (English CoT) and `gold`. Rows that cannot be used are quarantined, like every other bad row.

Languages: QAlign has training data for de es fr ja ru sw zh only. th, bn and te (in MGSM) have none:
they go into the probe and test splits and are evaluated zero-shot, and the build says so. A language
no shared file has needs the user's own file; without one it is a one-line error naming what exists.
The probe and test splits are built by slam.data.heldout (disjoint, checked, recorded in manifest.json).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

from slam import storage
from slam.data.build import make_examples, sha256_file, split_by_problem, write_dataset
from slam.data.loaders import normalize_question, raw_generic, raw_gsm8k, raw_qalign
from slam.data.records import Record
from slam.data.validate import validate_rows
from slam.errors import SlamError

QALIGN_LANGS = ("de", "es", "fr", "ja", "ru", "sw", "zh")
GENERATOR = "slam.data.real/2"


def build_real(shared: str, out: str, *, langs: list[str] | None = None,
               user_files: list[tuple[str, dict[str, str]]] = (), benchmarks: str = "",
               tests: list[str] = ("mgsm",), probe_source: str = "auto", probe_questions: int = 64,
               max_problems: int | None = None, translation_ratio: float = 1.0, val_fraction: float = 0.05,
               seed: int = 0, include_english: bool = True) -> dict[str, Any]:
    """Build train/val, probe.jsonl and test_<task>.jsonl under `out`; returns the manifest."""
    from slam.data import heldout

    langs = [x for x in dict.fromkeys(langs or QALIGN_LANGS) if x != "en"]
    benchmarks = benchmarks or str(shared)
    user_rows = [r for uri, mapping in user_files for r in raw_generic(uri, mapping)]
    cover = coverage(shared, langs, user_rows, benchmarks, list(tests))
    train_langs = [x for x in langs if cover["train"].get(x)]
    records, quarantine, summaries = _training_records(shared, cover, user_rows, include_english)
    records = _limit_problems(records, train_langs, max_problems, seed)

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
    held = heldout.build(records, ["en", *langs], benchmarks=benchmarks, tests=list(tests), source=probe_source,
                         n_probe=probe_questions, seed=seed)
    trained = sorted({e["lang"] for e in examples["train"]})
    manifest = {"generator": GENERATOR, "seed": seed, "langs": ["en", *langs] if include_english else langs,
                "trained_langs": trained, "zero_shot_langs": [x for x in langs if x not in trained],
                "notes": cover["notes"], "translation_ratio": translation_ratio, "val_fraction": val_fraction,
                "max_problems": max_problems, "sources": _sources(shared, cover, user_files),
                "validation": summaries, "quarantine_by_reason": _count(quarantine), **held["manifest"]}
    return write_dataset(out, examples, manifest, records=held["splits"], quarantine=quarantine)


def coverage(shared: str, langs: list[str], user_rows: list[dict], benchmarks: str,
             tests: list[str]) -> dict[str, Any]:
    """Which source trains each language and which benchmarks test it; a one-line error for a language
    nothing covers, notes for languages that are only evaluated."""
    from slam import tasks as T
    from slam.tasks.sources import available_langs, benchmark_source

    def langs_in(task: str, required: bool) -> set[str]:
        try:
            return set(available_langs(T.get(task), benchmark_source(task, benchmarks)))
        except SlamError:
            if required:
                raise
            return set()

    qalign = [x for x in QALIGN_LANGS if storage.exists(_qalign_file(shared, x, x))]
    user = sorted({r.get("lang") for r in user_rows if isinstance(r.get("lang"), str)} & set(langs))
    tested = {t: langs_in(t, required=True) for t in tests}
    mgsm = tested["mgsm"] if "mgsm" in tested else langs_in("mgsm", required=False)
    train = {x: ("user" if x in user else "qalign" if x in qalign else None) for x in langs}
    uncovered = [x for x in langs if not train[x] and x not in mgsm and not any(x in s for s in tested.values())]
    if uncovered:
        raise SlamError(
            f"no data for {', '.join(uncovered)}: QAlign (training) has {' '.join(qalign) or 'none'}; MGSM (probe/test) "
            f"has {' '.join(sorted(mgsm))}; give your own file for a new language (--user-data FILE --map "
            f"question=COL,english=COL,lang=={uncovered[0]})")
    notes = [f"{x}: no training data (QAlign has {' '.join(qalign)}; no --user-data file for it): it goes into "
             f"the probe/test splits only and is evaluated zero-shot" for x in langs if not train[x]]
    for t, have in tested.items():
        notes += [f"{x}: not in {t}, so not tested on it" for x in langs if x not in have]
    return {"train": train, "qalign": [x for x in langs if train[x] == "qalign"], "user": user, "notes": notes}


def _training_records(shared: str, cover: dict, user_rows: list[dict], include_english: bool
                      ) -> tuple[list[Record], list[dict], dict]:
    """GSM8K English problems + every translation joined to them (QAlign pairs, the user's rows)."""
    gsm_uri = storage.join(shared, "gsm8k", "train.jsonl")
    gsm = validate_rows(raw_gsm8k(gsm_uri), what="GSM8K train", require_answer=True)
    quarantine = [{**q, "stage": "gsm8k"} for q in gsm.quarantine]
    summaries = {"gsm8k": gsm.summary}
    translated: list[Record] = []
    for name, rows, langs in (("qalign", raw_qalign(storage.join(shared, "qalign_gsmtrans"), cover["qalign"])
                               if cover["qalign"] else [], cover["qalign"]),
                              ("user", user_rows, cover["user"])):
        if not rows:
            continue
        # only the requested languages (+ their English sides); a user's rows in others are quarantined
        allowed = langs + (["en"] if any(r.get("lang") == "en" for r in rows) else [])
        res = validate_rows(rows, langs=allowed, what=name, require_gold=False, restrict_langs=True)
        quarantine += [{**q, "stage": name} for q in res.quarantine]
        summaries[name] = res.summary
        translated += res.records
    records, join_q = _join_gsm8k(gsm.records, translated)
    quarantine += join_q
    if include_english:
        records = list(gsm.records) + records
    else:  # English questions stay the translation targets, without English cot rows
        records += [dataclasses.replace(g, answer=None) for g in gsm.records]
    return records, quarantine, summaries


def _join_gsm8k(gsm: list[Record], translated: list[Record]) -> tuple[list[Record], list[dict]]:
    """Each translated question takes the GSM8K problem its English side matches (id, CoT, gold); a row
    with its own answer and gold stays its own problem (with its English row); the rest is quarantined."""
    by_text = {normalize_question(r.question): r for r in gsm}
    english = {r.problem_id: r for r in translated if r.lang == "en"}
    out: list[Record] = []
    quarantine: list[dict] = []
    used: set[tuple[str, str]] = set()
    for r in translated:
        if r.lang == "en":
            continue
        en = english.get(r.problem_id)
        match = by_text.get(normalize_question(en.question)) if en else None
        if match is None and r.answer and r.gold is not None:
            out.append(r)
            if en and (r.problem_id, "en") not in used:
                used.add((r.problem_id, "en"))
                out.append(dataclasses.replace(en, answer=en.answer or r.answer, gold=r.gold))
            continue
        if match is None:
            quarantine.append({"reason": "unmatched", "detail": "English side matches no GSM8K train question "
                               "(and the row has no answer + gold of its own)", "where": "", "row": r.to_dict(),
                               "stage": "join"})
            continue
        if (match.problem_id, r.lang) in used:
            quarantine.append({"reason": "duplicate", "detail": f"second {r.lang} translation of {match.problem_id}",
                               "where": "", "row": r.to_dict(), "stage": "join"})
            continue
        used.add((match.problem_id, r.lang))
        out.append(dataclasses.replace(r, id=f"{match.problem_id}-{r.lang}", problem_id=match.problem_id,
                                       answer=match.answer, gold=match.gold, source=f"{r.source}+gsm8k"))
    return out, quarantine


def _limit_problems(records: list[Record], train_langs: list[str], max_problems: int | None,
                    seed: int) -> list[Record]:
    """At most `max_problems` problems, preferring those translated into every training language
    (a reduced run keeps the data parallel)."""
    if not max_problems:
        return records
    if max_problems < 0:
        raise SlamError(f"max_problems must be > 0, got {max_problems}")
    langs_of: dict[str, set[str]] = {}
    for r in records:
        langs_of.setdefault(r.problem_id, set()).add(r.lang)
    want = set(train_langs)
    ids = sorted(langs_of)
    random.Random(seed).shuffle(ids)
    ids.sort(key=lambda p: not want <= langs_of[p])  # stable: full-coverage problems first, shuffled
    keep = set(ids[:max_problems])
    return [r for r in records if r.problem_id in keep]


def _qalign_file(shared: str, lang: str, side: str) -> str:
    return storage.join(shared, "qalign_gsmtrans", "gsm8kinstruct_question", f"{lang}-en", f"train.{side}")


def _sources(shared: str, cover: dict, user_files: list[tuple[str, dict[str, str]]]) -> dict[str, str]:
    """sha256 of every input file, keyed by its path under `shared` (or its URI)."""
    uris = [storage.join(shared, "gsm8k", "train.jsonl")]
    uris += [_qalign_file(shared, x, s) for x in cover["qalign"] for s in (x, "en")]
    uris += [u for u, _ in user_files]
    out = {}
    for uri in uris:
        with storage.local_copy(uri) as p:
            out[_rel(uri, shared)] = sha256_file(Path(p))
    return out


def _rel(uri: str, root: str) -> str:
    return uri[len(str(root)):].lstrip("/") if uri.startswith(str(root)) else uri


def _count(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for q in rows:
        out[q["reason"]] = out.get(q["reason"], 0) + 1
    return dict(sorted(out.items()))
