"""Loaders for the real reasoning-data formats -> `Record`s (local paths or s3:// URIs).

    recs = load_mgsm("../shared/data/mgsm", langs=["de", "zh"])    # problem_id "mgsm-<row>"
    recs = load_msvamp("../shared/data/msvamp")                     # problem_id "msvamp-<row>"
    recs = load_gsm8k("../shared/data/gsm8k/train.jsonl")            # English CoT ending "The answer is N."
    recs = load_qalign("../shared/data/qalign_gsmtrans", ["de"])    # X + English questions, linked by problem_id
    recs = load_generic("s3://b/x.csv", {"question": "q", "gold": "ans", "lang": "=de"})

Each format is first parsed into raw rows (`raw_*`: a dict per line with its position, never
raising on one bad line), then checked by `slam.data.validate`: bad rows are quarantined and
counted (logged here; `slam data validate` and `slam data build` write them to a file). Benchmark files
(MGSM, MSVAMP, MathOctopus) write every gold the English way in every language (`_numbers: "en"`: "5,600"
is 5600 in mgsm_de.tsv too); user files are read the way their row's language writes numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from slam import langs as L
from slam import storage
from slam.data.records import Record
from slam.errors import SlamError

log = logging.getLogger(__name__)
Row = dict[str, Any]


def _lines(uri: str) -> list[tuple[int, str | None]]:
    """(line number, text) per non-blank line; text None where the bytes are not valid UTF-8."""
    out = []
    for i, raw in enumerate(storage.read_bytes(uri).split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            out.append((i, raw.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((i, None))
    return out


def _bad(where: str, reason: str, detail: str, **fields: Any) -> Row:
    return {"_error": reason, "_detail": detail, "_where": where, **fields}


def _json_lines(uri: str, source: str) -> list[tuple[str, Row | None, Row | None]]:
    """(where, object, error-row) per line of a JSON-lines file (also accepts one JSON array)."""
    text_lines = _lines(uri)
    first = next((t for _, t in text_lines if t is not None), "")
    if first.lstrip().startswith("["):
        try:
            items = json.loads(storage.read_text(uri))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SlamError(f"{uri}: not a valid JSON array ({e})") from None
        return [(f"{uri}:item {i}", it if isinstance(it, dict) else None,
                 None if isinstance(it, dict) else _bad(f"{uri}:item {i}", "parse_error", "item is not an object",
                                                        source=source))
                for i, it in enumerate(items)]
    out: list[tuple[str, Row | None, Row | None]] = []
    for n, text in text_lines:
        where = f"{uri}:{n}"
        if text is None:
            out.append((where, None, _bad(where, "encoding", "invalid UTF-8 bytes", source=source)))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            out.append((where, None, _bad(where, "parse_error", f"not valid JSON ({e.msg})", source=source)))
            continue
        if not isinstance(obj, dict):
            out.append((where, None, _bad(where, "parse_error", "line is not a JSON object", source=source)))
            continue
        out.append((where, obj, None))
    return out


# ---------------------------------------------------------------------------------------------- raw rows


def raw_records(uri: str) -> list[Row]:
    """Record JSONL (our own format: id, problem_id, lang, question, answer, gold, source)."""
    rows = []
    for where, obj, err in _json_lines(str(uri), "records"):
        rows.append(err if err else {**obj, "_where": where})
    return rows


def raw_mgsm(root: str, langs: list[str] | None = None) -> list[Row]:
    """mgsm_<lang>.tsv files under root: `question<TAB>answer`, no header; row i = problem mgsm-i."""
    rows = []
    for lang in langs or _mgsm_langs(root):
        uri = storage.join(root, f"mgsm_{lang}.tsv")
        if not storage.exists(uri):
            raise SlamError(f"MGSM has no file for language {lang!r} ({uri} not found)")
        rows.extend(raw_tsv(uri, lang, prefix="mgsm", source="mgsm"))
    return rows


def _mgsm_langs(root: str) -> list[str]:
    if storage.is_s3(root):
        raise SlamError("MGSM on s3:// needs explicit langs (no listing of prefixes)")
    found = sorted(p.stem[len("mgsm_"):] for p in Path(root).glob("mgsm_*.tsv"))
    if not found:
        raise SlamError(f"no mgsm_<lang>.tsv files in {root}")
    return found


def raw_tsv(uri: str, lang: str, *, prefix: str, source: str) -> list[Row]:
    rows = []
    for idx, (n, text) in enumerate(_lines(uri)):
        where = f"{uri}:{n}"
        pid = f"{prefix}-{idx}"
        if text is None:
            rows.append(_bad(where, "encoding", "invalid UTF-8 bytes", problem_id=pid, lang=lang, source=source))
            continue
        parts = text.split("\t")
        if len(parts) != 2:
            rows.append(_bad(where, "parse_error", f"expected question<TAB>answer, got {len(parts)} field(s)",
                             problem_id=pid, lang=lang, source=source))
            continue
        rows.append({"id": f"{pid}-{lang}", "problem_id": pid, "lang": lang, "question": parts[0],
                     "answer": None, "gold": parts[1], "source": source, "_where": where, "_numbers": "en"})
    return rows


def raw_mathoctopus(uri: str, lang: str, prefix: str | None = None) -> list[Row]:
    """MathOctopus eval JSON lines `{"query", "response"}` (e.g. mgsm/mathoctopus_json/mgsm_German.json)."""
    prefix = prefix or Path(str(uri)).stem.split("_")[0].lower()
    rows = []
    for idx, (where, obj, err) in enumerate(_json_lines(str(uri), "mathoctopus")):
        pid = f"{prefix}-{idx}"
        if err:
            rows.append({**err, "problem_id": pid, "lang": lang})
            continue
        rows.append({"id": f"{pid}-{lang}", "problem_id": pid, "lang": lang, "question": obj.get("query"),
                     "answer": None, "gold": obj.get("response"), "source": prefix, "_where": where, "_numbers": "en"})
    return rows


def raw_msvamp(root: str, langs: list[str] | None = None) -> list[Row]:
    """test_<Language>.json lines; the translated question is `m_query`; row i = problem msvamp-i."""
    rows = []
    for lang in langs or ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "th", "zh"]:
        uri = storage.join(root, f"test_{L.name(lang)}.json")
        if not storage.exists(uri):
            raise SlamError(f"MSVAMP has no file for language {lang!r} ({uri} not found)")
        rows.extend(raw_msvamp_file(uri, lang))
    return rows


def raw_msvamp_file(uri: str, lang: str) -> list[Row]:
    rows = []
    for idx, (where, obj, err) in enumerate(_json_lines(uri, "msvamp")):
        pid = f"msvamp-{idx}"
        if err:
            rows.append({**err, "problem_id": pid, "lang": lang})
            continue
        rows.append({"id": f"{pid}-{lang}", "problem_id": pid, "lang": lang, "question": obj.get("m_query"),
                     "answer": None, "gold": obj.get("response"), "source": "msvamp", "_where": where, "_numbers": "en"})
    return rows


_CALC = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"^\s*####\s*(.*?)\s*$")


def gsm8k_cot(answer: str) -> tuple[str, str] | None:
    """GSM8K answer -> (English CoT ending "The answer is N.", N); None when there is no `#### N` line."""
    lines = [ln for ln in answer.strip().split("\n")]
    m = _FINAL.match(lines[-1]) if lines else None
    if not m or not m.group(1):
        return None
    gold = m.group(1).replace(",", "").replace("$", "").strip()
    steps = [_CALC.sub("", ln).strip() for ln in lines[:-1]]
    steps = [s for s in steps if s]
    return "\n".join(steps + [f"The answer is {gold}."]), gold


def raw_gsm8k(uri: str) -> list[Row]:
    """GSM8K JSON lines `{"question", "answer"}`: `<<a=b>>` annotations removed, `#### n` -> "The answer is n."."""
    split = Path(str(uri)).stem
    rows = []
    for idx, (where, obj, err) in enumerate(_json_lines(str(uri), "gsm8k")):
        pid = f"gsm8k-{split}-{idx}"
        if err:
            rows.append({**err, "problem_id": pid, "lang": "en"})
            continue
        raw = obj.get("answer")
        conv = gsm8k_cot(raw) if isinstance(raw, str) else None
        if isinstance(raw, str) and raw.strip() and conv is None:
            rows.append(_bad(where, "parse_error", "GSM8K answer has no final '#### <number>' line",
                             problem_id=pid, lang="en", question=obj.get("question"), source="gsm8k"))
            continue
        rows.append({"id": f"{pid}-en", "problem_id": pid, "lang": "en", "question": obj.get("question"),
                     "answer": conv[0] if conv else raw, "gold": conv[1] if conv else None, "source": "gsm8k",
                     "_where": where})
    return rows


def normalize_question(text: str) -> str:
    """Whitespace-insensitive key (QAlign's English lines match GSM8K questions after this)."""
    return " ".join(text.split())


def question_key(text: str) -> str:
    return hashlib.sha1(normalize_question(text).encode("utf-8")).hexdigest()[:12]


def raw_qalign(root: str, langs: list[str]) -> list[Row]:
    """QAlign `gsm8kinstruct_question/<x>-en/train.{x,en}` line pairs -> X rows + English rows.

    A problem is its English question: problem_id = "qalign-<hash of the whitespace-normalised English
    line>", so the same question across language pairs (and in GSM8K) lines up. English rows are
    emitted once per distinct question.
    """
    base = storage.join(root, "gsm8kinstruct_question") if not str(root).rstrip("/").endswith(
        "gsm8kinstruct_question") else str(root)
    rows: list[Row] = []
    english_seen: set[str] = set()
    for lang in langs:
        x_uri, en_uri = storage.join(base, f"{lang}-en", f"train.{lang}"), storage.join(base, f"{lang}-en", "train.en")
        for u in (x_uri, en_uri):
            if not storage.exists(u):
                raise SlamError(f"QAlign has no {lang}-en pair ({u} not found)")
        x_lines = storage.read_bytes(x_uri).split(b"\n")
        en_lines = storage.read_bytes(en_uri).split(b"\n")
        while x_lines and not x_lines[-1].strip() and en_lines and not en_lines[-1].strip():
            x_lines.pop(), en_lines.pop()
        if len(x_lines) != len(en_lines):
            raise SlamError(f"QAlign {lang}-en is not line-aligned: {len(x_lines)} lines in train.{lang} vs "
                            f"{len(en_lines)} in train.en")
        for i, (xb, eb) in enumerate(zip(x_lines, en_lines, strict=True), 1):
            where = f"{x_uri}:{i}"
            try:
                x, en = xb.decode("utf-8").rstrip("\r"), eb.decode("utf-8").rstrip("\r")
            except UnicodeDecodeError:
                rows.append(_bad(where, "encoding", "invalid UTF-8 bytes", lang=lang, source="qalign"))
                continue
            pid = f"qalign-{question_key(en)}" if en.strip() else f"qalign-{lang}-line-{i}"
            rows.append({"id": f"{pid}-{lang}", "problem_id": pid, "lang": lang, "question": x, "answer": None,
                         "gold": None, "source": "qalign", "_where": where})
            if en.strip() and pid not in english_seen:
                english_seen.add(pid)
                rows.append({"id": f"{pid}-en", "problem_id": pid, "lang": "en", "question": en, "answer": None,
                             "gold": None, "source": "qalign", "_where": f"{en_uri}:{i}"})
    return rows


GENERIC_FIELDS = ("id", "problem_id", "lang", "question", "answer", "gold", "source", "english")


def raw_generic(uri: str, mapping: dict[str, str]) -> list[Row]:
    """JSONL/JSON/CSV/TSV/Parquet with `mapping` {record field: column, or "=constant"}.

    `english` (optional) names the column holding each question's English original: every such row
    also yields an English row of the same problem (the translation target; `slam data build` joins it
    to GSM8K by that text, as it does QAlign's pairs)."""
    uri = str(uri)
    unknown = [k for k in mapping if k not in GENERIC_FIELDS]
    if unknown:
        raise SlamError(f"field mapping names unknown record field(s) {', '.join(unknown)}")
    if "question" not in mapping:
        raise SlamError("field mapping must say which column holds the question (question=COLUMN)")
    suffix = uri.rsplit(".", 1)[-1].lower()
    items: list[tuple[str, Row | None, Row | None]]
    if suffix in ("jsonl", "json"):
        items = _json_lines(uri, "generic")
    elif suffix in ("csv", "tsv"):
        try:
            text = storage.read_bytes(uri).decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError:
            raise SlamError(f"{uri}: not valid UTF-8 (a CSV must be UTF-8 throughout)") from None
        items = _csv_items(uri, text, "\t" if suffix == "tsv" else ",")
    elif suffix == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid/ArrowIOError subclass these
            raise SlamError(f"{uri}: not a readable Parquet file ({str(e).splitlines()[0][:120]})") from None
        items = [(f"{uri}:row {i}", r, None) for i, r in enumerate(table.to_pylist())]
    else:
        raise SlamError(f"{uri}: unknown file type .{suffix} (use .jsonl, .json, .csv, .tsv or .parquet)")
    if items and items[0][1] is not None:
        cols = set(items[0][1])
        missing = [c for c in mapping.values() if not c.startswith("=") and c not in cols]
        if missing:
            raise SlamError(f"{uri}: column(s) {', '.join(missing)} not found (columns: {', '.join(sorted(cols))})")
    stem = Path(uri).stem
    rows = []
    for idx, (where, obj, err) in enumerate(items):
        if err:
            rows.append(err)
            continue
        row: Row = {"source": stem, "_where": where}
        for field, col in mapping.items():
            row[field] = col[1:] if col.startswith("=") else obj.get(col)
        row.setdefault("problem_id", f"{stem}-{idx}")
        row["problem_id"] = str(row["problem_id"])
        row.setdefault("id", f"{row['problem_id']}-{row.get('lang')}")
        english = row.pop("english", None)
        rows.append(row)
        if isinstance(english, str) and english.strip():
            rows.append({**row, "id": f"{row['problem_id']}-en", "lang": "en", "question": english})
    return rows


def raw_hf(path: str, lang: str, columns: dict[str, str], *, prefix: str, revision: str | None = None) -> list[Row]:
    """The `test` split of config `lang` of a Hugging Face `datasets` dataset (a hub id, or a local dir
    `datasets` can load) -> raw rows; `columns` maps question/gold to the dataset's column names. Row i
    is problem `<prefix>-i`, as in the native files (the hub copies keep their row order)."""
    try:
        import datasets
    except ImportError:
        raise SlamError("reading a benchmark through `datasets` needs it installed: pip install datasets==5.2.0") from None
    try:
        ds = datasets.load_dataset(path, lang, split="test", revision=revision)
    except Exception as e:  # offline, unknown id/config: one line, whatever datasets raised
        msg = str(e).strip().splitlines()[0][:240] if str(e).strip() else type(e).__name__
        raise SlamError(f"cannot load {path} (config {lang!r}, split test) with datasets: {msg}") from None
    missing = [c for c in columns.values() if c not in ds.column_names]
    if missing:
        raise SlamError(f"{path} ({lang}) has no column(s) {', '.join(missing)} (columns: {', '.join(ds.column_names)})")
    rows = []
    for idx, item in enumerate(ds):
        pid = f"{prefix}-{idx}"
        rows.append({"id": f"{pid}-{lang}", "problem_id": pid, "lang": lang, "question": item[columns["question"]],
                     "answer": None, "gold": item[columns["gold"]], "source": prefix,
                     "_where": f"{path}[{lang}]:row {idx}"})
    return rows


def _csv_items(uri: str, text: str, delimiter: str) -> list[tuple[str, Row | None, Row | None]]:
    """(where, row, error-row) per CSV record, the first record being the header. A malformed record (an
    unclosed quote, a field over the csv module's size limit) becomes one parse_error row and parsing
    resumes on the next line: an unclosed quote cannot fold the rows after it into one silent field."""
    lines = text.split("\n")
    header: list[str] | None = None
    items: list[tuple[str, Row | None, Row | None]] = []
    start = 0
    while start < len(lines):
        reader = csv.reader(io.StringIO("\n".join(lines[start:])), delimiter=delimiter, strict=True)
        done = 0  # physical lines of this chunk consumed by complete records
        try:
            for rec in reader:
                first, done = start + done + 1, reader.line_num
                if not any(f.strip() for f in rec):
                    continue
                if header is None:
                    header = rec
                elif len(rec) != len(header):
                    where = f"{uri}:{first}"
                    items.append((where, None, _bad(where, "parse_error", f"expected {len(header)} fields, got "
                                                    f"{len(rec)}", source="generic", fields=rec[:20])))
                else:
                    items.append((f"{uri}:{first}", dict(zip(header, rec, strict=True)), None))
            break
        except csv.Error as e:
            bad = start + done + 1
            if header is None:
                raise SlamError(f"{uri}: the header line is not valid CSV ({e})") from None
            why = ("a field is longer than the csv module's limit" if "field larger" in str(e)
                   else f"malformed CSV ({e}; an unclosed quote?)")
            where = f"{uri}:{bad}"
            items.append((where, None, _bad(where, "parse_error", f"{why}: line {bad} quarantined, reading "
                                            f"resumes at line {bad + 1}", source="generic",
                                            line=lines[bad - 1][:500])))
            start = bad
    return items


# ------------------------------------------------------------------------------------------ Record loaders


def _checked(rows: list[Row], what: str, langs: list[str] | None = None, **kw: Any) -> list[Record]:
    from slam.data.validate import validate_rows

    res = validate_rows(rows, langs=langs, what=what, **kw)
    if res.quarantine:
        log.warning("%s: %d of %d rows quarantined (%s)", what, len(res.quarantine), res.summary["read"],
                    ", ".join(f"{k} {v}" for k, v in res.summary["by_reason"].items()))
    return res.records


def read_records(uri: str) -> list[Record]:
    return _checked(raw_records(uri), str(uri), require_gold=False)


def load_mgsm(root: str, langs: list[str] | None = None) -> list[Record]:
    return _checked(raw_mgsm(str(root), langs), f"MGSM {root}", langs, dedupe_text=False)


def load_msvamp(root: str, langs: list[str] | None = None) -> list[Record]:
    return _checked(raw_msvamp(str(root), langs), f"MSVAMP {root}", langs, dedupe_text=False)


def load_mathoctopus_jsonl(path: str, lang: str) -> list[Record]:
    return _checked(raw_mathoctopus(str(path), lang), str(path), [lang], dedupe_text=False)


def load_gsm8k(path: str) -> list[Record]:
    return _checked(raw_gsm8k(str(path)), str(path), require_answer=True)


def load_qalign(root: str, langs: list[str]) -> list[Record]:
    return _checked(raw_qalign(str(root), langs), f"QAlign {root}", langs, require_gold=False)


def load_generic(uri: str, mapping: dict[str, str]) -> list[Record]:
    return _checked(raw_generic(str(uri), mapping), str(uri), require_gold="gold" in mapping)
