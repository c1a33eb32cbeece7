"""Training data as it arrives: one folder per language, which a schedule watches for new languages.

    s3://bucket/languages/en/train.jsonl      # Record rows (slam.data.records); en rows carry the English CoT
    s3://bucket/languages/de/train.jsonl      # the same problems (problem_id) asked in German
    s3://bucket/languages/de/test.jsonl       # optional: held-out questions for evaluation
    s3://bucket/languages/de/probe.jsonl      # optional: parallel questions for layer probing
    s3://bucket/languages/sw/...              # a new language arrives: a new folder

    list_languages("s3://bucket/languages")                          # ["de", "en", "sw"]
    build_from_languages("s3://bucket/languages", "s3://b/data/x")    # a built dataset (slam.data.build)
    slam data synth --per-language --out runs/languages --langs en,de,fr   # the demo world in this layout

A folder counts once its train.jsonl exists (write it last). `build_from_records` is the one builder
from Record files (also `slam data build --records`): rows validated and quarantined, problems split
between train and val, then the cot/translate examples of slam.data.build.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from slam import storage
from slam.errors import SlamError

LANG_DIR = re.compile(r"^[a-z]{2,3}$")  # ISO 639-1/-3 codes only: any other folder is not a language


def _entries(root: str) -> list[tuple[str, str]]:
    """(relative path, version stamp) of the files under `root` (ETag on S3, size+mtime locally)."""
    if storage.is_s3(root):
        return storage.list_objects(root)
    base = Path(root)
    if not base.is_dir():
        raise SlamError(f"language folder root {root} is not a directory")
    return [(p.relative_to(base).as_posix(), f"{p.stat().st_size}-{p.stat().st_mtime_ns}")
            for p in sorted(base.rglob("*")) if p.is_file()]


def list_languages(root: str) -> list[str]:
    """Language codes with a `<code>/train.jsonl` under `root`, sorted."""
    return sorted({k.split("/")[0] for k, _ in _entries(root)
                   if k.count("/") == 1 and k.endswith("/train.jsonl") and LANG_DIR.match(k.split("/")[0])})


def fingerprint(root: str, langs: list[str]) -> str:
    """Changes when any file of these languages changes (so a rebuilt step is not mistaken for a reused one)."""
    stamps = sorted(f"{k}={v}" for k, v in _entries(root) if k.split("/")[0] in langs)
    return storage.fingerprint_bytes("\n".join(stamps).encode())[:16]


def build_from_records(record_uris: list[str], out: str, *, langs: list[str] | None = None,
                       translation_ratio: float = 1.0, val_fraction: float = 0.05, seed: int = 0,
                       include_english: bool = True, records: dict[str, list[Any]] | None = None,
                       extra_manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record JSONL files (questions per language, English CoT on the en rows) -> a built dataset at `out`.
    `records`: optional test/probe Record lists written beside the examples."""
    from slam.data.build import make_examples, sha256_file, split_by_problem, write_dataset
    from slam.data.loaders import raw_records
    from slam.data.validate import validate_rows

    rows = [r for uri in record_uris for r in raw_records(uri)]
    res = validate_rows(rows, langs=langs, what=", ".join(record_uris), require_gold=False)
    kept = [r for r in res.records if not langs or r.lang in langs or r.lang == "en"]
    skipped = Counter(r.lang for r in res.records if langs and r.lang not in langs and r.lang != "en")
    quarantine = list(res.quarantine)
    val_ids = split_by_problem({r.problem_id for r in kept}, val_fraction, seed)
    examples = {}
    for split, in_val in (("train", False), ("val", True)):
        ex, q = make_examples([r for r in kept if (r.problem_id in val_ids) == in_val],
                              translation_ratio=translation_ratio, seed=seed)
        examples[split] = [e for e in ex if include_english or e["lang"] != "en"]
        quarantine += [{"reason": "no_pair", "detail": x.pop("reason"), "where": "", "row": x} for x in q]
    sources = {}
    for uri in record_uris:
        with storage.local_copy(uri) as p:
            sources[uri] = sha256_file(p)
    manifest = {"generator": "slam.data.build/records", "seed": seed, "translation_ratio": translation_ratio,
                "val_fraction": val_fraction, "sources": sources,
                # read = kept + quarantined (validation); kept = used + skipped_by_langs
                "validation": {**res.summary, "skipped_by_langs": dict(sorted(skipped.items()))},
                **(extra_manifest or {})}
    return write_dataset(out, examples, manifest, records=records, quarantine=quarantine)


def build_from_languages(root: str, out: str, langs: list[str] | None = None, *, val_fraction: float = 0.1,
                         seed: int = 0, translation_ratio: float = 1.0) -> dict[str, Any]:
    """Every language folder under `root` (or those in `langs`; en always, it carries the answers) -> a
    built dataset with train/val examples and the folders' test/probe questions."""
    from slam.data.loaders import read_records

    found = list_languages(root)
    use = sorted(set(langs or found) | {"en"})
    missing = [lang for lang in use if lang not in found]
    if missing:
        raise SlamError(f"{root}: no train.jsonl for {', '.join(missing)} (found: {', '.join(found) or 'none'})")
    present = {k for k, _ in _entries(root)}
    extra = {split: [r for lang in use if f"{lang}/{split}.jsonl" in present
                     for r in read_records(storage.join(root, lang, f"{split}.jsonl"))] for split in ("test", "probe")}
    return build_from_records([storage.join(root, lang, "train.jsonl") for lang in use], out, langs=use,
                              translation_ratio=translation_ratio, val_fraction=val_fraction, seed=seed,
                              records={k: v for k, v in extra.items() if v},
                              extra_manifest={"langs": use, "languages_root": root})


def write_synthetic_languages(out: str, langs: list[str], *, n_train: int, n_test: int, n_probe: int,
                              seed: int = 0) -> list[str]:
    """The synthetic world in this layout (what `slam data synth --per-language` writes): the same seed
    gives the same problems in every language, so a language added later is parallel to the others."""
    from slam.data.records import to_jsonl
    from slam.data.synth import check_langs, synth_splits

    langs = check_langs(langs)
    problems = synth_splits(n_train=n_train, n_val=0, n_test=n_test, n_probe=n_probe, seed=seed, langs=langs)
    for lang in langs:
        for split in ("test", "probe", "train"):  # train.jsonl last: its presence marks the folder complete
            recs = [p[lang] for p in problems[split] if lang in p]
            storage.write_text(storage.join(out, lang, f"{split}.jsonl"), to_jsonl(recs))
    return langs

