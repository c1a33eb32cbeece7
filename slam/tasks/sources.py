"""Where a benchmark's questions come from, by URI: nothing here depends on where slam is installed.

    src = benchmark_source("mgsm", "s3://bucket/bench", data_uri="")     # -> s3://bucket/bench/mgsm
    src = benchmark_source("mgsm", "mgsm=hf:juletxara/mgsm,msvamp=/data/msvamp")
    src = benchmark_source("mgsm", "", data_uri="runs/real")              # -> runs/real/test_mgsm.jsonl
    records = read_benchmark(tasks.get("mgsm"), src, langs=["en", "de"])

A source is one of:
- a dir or `s3://` prefix of the benchmark's own files (mgsm_<lang>.tsv, test_<Language>.json);
- a Record JSONL file (`test_<task>.jsonl`, the test split `slam data build` writes);
- `hf:org/name[@revision]`: the hub through `datasets` (online only; configs named by language code,
  a `test` split, the task's HF_COLUMNS), or a local dir `datasets` can load in the same layout.

The `benchmarks` setting (pipeline parameter, `slam data build --benchmarks`) is a root holding one
dir per task (`<root>/mgsm`, `<root>/msvamp`), or `task=source` pairs. With none, the evaluation
reads the test split of the built data set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

from slam import storage
from slam.errors import SlamError

log = logging.getLogger(__name__)
FORMS = "a dir or s3:// prefix of its files, a test_<task>.jsonl, or hf:org/name"


def benchmark_source(task: str, benchmarks: str = "", data_uri: str = "") -> str:
    """The source of `task`'s questions (see module docstring), decided in one place."""
    from slam.config import parse_key_values, split_list

    b = str(benchmarks or "").strip()
    if any(c.isspace() or ord(c) < 32 for c in b.replace(" ", "").replace(",", "")):
        raise SlamError(f"benchmarks {b!r} contains whitespace or control characters")
    if b and "=" in b:
        mapping = parse_key_values(split_list(b), "benchmarks")
        if task not in mapping:
            raise SlamError(f"benchmarks {b!r} names no source for {task} (give {task}=<{FORMS}>)")
        return mapping[task].strip()
    if b.startswith("hf:"):
        return b
    if b:
        return storage.join(b, task)
    if data_uri:
        split = storage.join(data_uri, f"test_{task}.jsonl")
        if storage.exists(split):
            return split
    raise SlamError(f"no {task} questions: set benchmarks (a root holding {task}/, or {task}=<{FORMS}>) or "
                    f"evaluate on a `slam data build --test {task}` output (it writes test_{task}.jsonl)"
                    + (f"; {data_uri} has none" if data_uri else ""))


def _split_in_dir(mod: ModuleType, source: str) -> str:
    """A built data set's dir stands for its test_<task>.jsonl."""
    s = str(source)
    if s.startswith("hf:") or s.endswith((".jsonl", ".json")):
        return s
    split = storage.join(s, f"test_{mod.NAME}.jsonl")
    return split if storage.exists(split) else s


def kind(mod: ModuleType, source: str) -> str:
    """native | records | datasets: how `source` is read."""
    s = str(source)
    if s.startswith("hf:"):
        return "datasets"
    if s.endswith((".jsonl", ".json")) and not storage.is_s3(s) and Path(s).is_file():
        return "records"
    if storage.is_s3(s):
        return "records" if s.endswith(".jsonl") else "native"
    p = Path(s)
    if not p.exists():
        raise SlamError(f"{mod.NAME} source not found: {s} ({FORMS})")
    if any((p / mod.native_file(lang)).is_file() for lang in mod.LANGS):
        return "native"
    if (p / "README.md").is_file() or any(p.rglob("*.parquet")) or (p / "dataset_dict.json").is_file():
        return "datasets"
    raise SlamError(f"{s} holds no {mod.NAME} files ({', '.join(mod.native_file(x) for x in mod.LANGS[:2])}, ...) "
                    "and is no `datasets` dir")


def available_langs(mod: ModuleType, source: str) -> list[str]:
    """The languages `source` has questions in (the hub is not asked: the task's own list)."""
    source = _split_in_dir(mod, source)
    k = kind(mod, source)
    if k == "datasets":
        return list(mod.LANGS)
    if k == "records":
        from slam.data.loaders import raw_records

        return sorted({r.get("lang") for r in raw_records(source) if isinstance(r.get("lang"), str)})
    return [lang for lang in mod.LANGS if storage.exists(storage.join(source, mod.native_file(lang)))]


def read_benchmark(mod: ModuleType, source: str, langs: list[str] | None = None) -> list:
    """Validated Records of `source` for `langs` (all the task has when None), in file order."""
    from slam.data import loaders as Ld
    from slam.data.validate import validate_rows

    source = _split_in_dir(mod, source)
    k = kind(mod, source)
    if k == "records":
        rows = Ld.raw_records(source)
        if langs:
            rows = [r for r in rows if r.get("lang") in set(langs)]
    elif k == "datasets":
        path = source[3:] if source.startswith("hf:") else source
        path, _, revision = path.partition("@")
        rows = [r for lang in (langs or mod.LANGS) for r in Ld.raw_hf(path, lang, mod.HF_COLUMNS, prefix=mod.NAME,
                                                                       revision=revision or None)]
    else:
        rows = mod.raw_native(source, langs or list(mod.LANGS))
    res = validate_rows(rows, langs=langs, what=f"{mod.NAME} {source}", dedupe_text=False)
    if res.quarantine:
        log.warning("%s %s: %s", mod.NAME, source, res.line())
    return res.records
