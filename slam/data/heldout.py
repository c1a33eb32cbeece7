"""The probe set and the test split(s) of a built data set, disjoint by construction and by check.

    held = build(records, ["en", "de", "th"], benchmarks="../shared/data", tests=["mgsm"], source="auto",
                 n_probe=64, seed=0)
    held["splits"]     # {"probe": [Record...], "test_mgsm": [Record...]}  -> probe.jsonl, test_mgsm.jsonl
    held["manifest"]   # {"probe": {...source, langs, held_out, disjointness...}, "test": {...}}

Probe questions are parallel (one problem_id in every language) and never a question the model is
evaluated on. Sources:
- `train`: translations of GSM8K *train* problems from the training records (QAlign, your files);
  MGSM/MSVAMP test problems are GSM8K-test/SVAMP problems, so the two never meet.
- `mgsm`: the LAST n MGSM problems, held out: test_mgsm.jsonl leaves them out, manifest.json lists them
  (probe.held_out), and the pipeline's evaluation drops them from any MGSM source. Taken from the end so
  an evaluation `limit` (the first k questions) is the same set with or without the hold-out.
- `auto`: `train` when every language has training translations, else `mgsm` (th, bn, te have none).
Either way the build checks that no probe question (text or problem_id) is in a test split.
"""

from __future__ import annotations

import random
import re
from typing import Any

from slam.data.loaders import normalize_question
from slam.data.records import Record
from slam.errors import SlamError

SOURCES = ("auto", "train", "mgsm", "none")


def build(records: list[Record], langs: list[str], *, benchmarks: str, tests: list[str], source: str = "auto",
          n_probe: int = 64, seed: int = 0) -> dict[str, Any]:
    """Probe + test splits for `langs` (en first) and what manifest.json says about them."""
    if source not in SOURCES:
        raise SlamError(f"probe source must be one of {', '.join(SOURCES)}, got {source!r}")
    if n_probe < 0:
        raise SlamError(f"probe questions must be >= 0, got {n_probe}")
    by_pid = _by_problem(records)
    parallel = sorted(p for p, g in by_pid.items() if all(x in g for x in langs))
    if source == "auto":
        source = "none" if n_probe == 0 else "train" if parallel else "mgsm"
    probe: list[Record] = []
    held_out: dict[str, list[str]] = {}
    if source == "train":
        if not parallel:
            raise SlamError(f"no training problem is translated into every one of {', '.join(langs)}: probe "
                            "with --probe-source mgsm (MGSM questions held out from the test split)")
        ids = parallel[:]
        random.Random(seed).shuffle(ids)
        probe = [_probe_record(by_pid[p][x]) for p in sorted(ids[:n_probe], key=_natural) for x in langs]
    elif source == "mgsm":
        probe = _mgsm_probe(benchmarks, langs, n_probe)
        held_out["mgsm"] = sorted({r.problem_id for r in probe}, key=_natural)

    splits: dict[str, list[Record]] = {"probe": probe} if probe else {}
    test_meta: dict[str, Any] = {}
    disjoint: dict[str, Any] = {}
    for task in tests:
        recs, meta = _test_split(task, benchmarks, langs, held_out.get(task, []))
        splits[f"test_{task}"] = recs
        test_meta[task] = meta
        disjoint[task] = check_disjoint(probe, recs, task)
    probe_meta = {"source": source, "langs": langs if probe else [],
                  "questions_per_lang": len(probe) // len(langs) if probe else 0,
                  "from": {"train": "translations of GSM8K train problems (training records)",
                           "mgsm": "MGSM test problems held out from every MGSM evaluation",
                           "none": "no probe set"}[source],
                  "held_out": held_out, "disjoint_from_test": disjoint}
    return {"splits": splits, "manifest": {"probe": probe_meta, "test": test_meta}}


def check_disjoint(probe: list[Record], test: list[Record], task: str) -> dict[str, int]:
    """Probe and test share no problem_id and no question text (per language); a SlamError otherwise."""
    shared_ids = {r.problem_id for r in probe} & {r.problem_id for r in test}
    texts = {(r.lang, normalize_question(r.question)) for r in probe}
    shared_texts = [r.id for r in test if (r.lang, normalize_question(r.question)) in texts]
    if shared_ids or shared_texts:
        raise SlamError(f"probe and test_{task} overlap ({len(shared_ids)} problem ids, {len(shared_texts)} "
                        f"question texts, e.g. {sorted(shared_ids)[:3] or shared_texts[:3]}): refusing to write them")
    return {"probe_questions": len(probe), "test_questions": len(test), "shared_problem_ids": 0,
            "shared_question_texts": 0}


def _test_split(task: str, benchmarks: str, langs: list[str], exclude: list[str]) -> tuple[list[Record], dict]:
    from slam import tasks as T
    from slam.tasks.sources import available_langs, benchmark_source

    mod = T.get(task)
    src = benchmark_source(task, benchmarks)
    have = set(available_langs(mod, src))
    keep = [x for x in langs if x in have]
    if not keep:
        raise SlamError(f"{task} at {src} has none of {', '.join(langs)} (it has {', '.join(sorted(have))})")
    recs = mod.load(src, langs=keep, exclude=exclude)
    per_lang = len(recs) // len(keep)
    return recs, {"source": src, "langs": keep, "not_in_benchmark": [x for x in langs if x not in have],
                  "questions_per_lang": per_lang, "held_out_for_probe": len(exclude)}


def _mgsm_probe(benchmarks: str, langs: list[str], n: int) -> list[Record]:
    from slam import tasks as T
    from slam.tasks.sources import available_langs, benchmark_source

    mod = T.get("mgsm")
    src = benchmark_source("mgsm", benchmarks)
    missing = [x for x in langs if x not in set(available_langs(mod, src))]
    if missing:
        raise SlamError(f"probe from MGSM: it has no {', '.join(missing)}; probe with --probe-source train "
                        "(translations in the training data) or leave those languages out")
    recs = mod.load(src, langs=langs)
    pids = sorted({r.problem_id for r in recs}, key=_natural)
    if n * 2 > len(pids):
        raise SlamError(f"{n} probe questions would take over half of MGSM's {len(pids)} problems: ask for fewer")
    keep = set(pids[-n:]) if n else set()
    return [_probe_record(r) for r in sorted((r for r in recs if r.problem_id in keep),
                                             key=lambda r: (_natural(r.problem_id), langs.index(r.lang)))]


def _probe_record(r: Record) -> Record:
    return Record(id=r.id, problem_id=r.problem_id, lang=r.lang, question=r.question, answer=None, gold=r.gold,
                  source=r.source)


def _by_problem(records: list[Record]) -> dict[str, dict[str, Record]]:
    out: dict[str, dict[str, Record]] = {}
    for r in records:
        if r.question and r.question.strip():
            out.setdefault(r.problem_id, {}).setdefault(r.lang, r)
    return out


def _natural(s: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))
