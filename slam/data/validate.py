"""Row validation with quarantine: every bad row is kept aside with a reason, never silently dropped.

    res = validate_rows(raw_rows, langs=["de", "zh"], what="mgsm")
    res.records          # the good rows as Records
    res.quarantine       # [{"reason": "script_mismatch", "detail": "...", "where": "file:12", "row": {...}}]
    res.summary          # {"read": 250, "kept": 249, "quarantined": 1, "by_reason": {...}, "by_lang": {...}}

Reasons (stable codes): parse_error, encoding, missing_field, unknown_lang, bad_gold, script_mismatch,
too_long, duplicate. read = kept + quarantined always. All rows bad, or a requested language left
with no rows, is a SlamError (one line).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from slam import langs as L
from slam.data.records import Record
from slam.errors import SlamError

REASONS = ("parse_error", "encoding", "missing_field", "unknown_lang", "bad_gold", "script_mismatch", "too_long",
           "duplicate")
MAX_CHARS = 6000
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# a UTF-8 lead byte shown as Latin-1/cp1252 (Ã, Â, â, Ð, ...) followed by a continuation-byte character
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
                       "\u02c6\u02dc\u2013-\u203a\u20ac\u2122]")


@dataclass
class ValidationResult:
    records: list[Record] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        s = self.summary
        reasons = ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()) or "none"
        langs = ", ".join(f"{k} {v}" for k, v in s["by_lang"].items())
        return (f"read {s['read']} = kept {s['kept']} + quarantined {s['quarantined']} "
                f"(reasons: {reasons}); kept per language: {langs}")


# Languages whose numbers are written 3,5 (decimal comma) and 1.234 (thousands dot).
DECIMAL_COMMA = frozenset({"de", "fr", "es", "ru", "it", "pt", "nl", "id", "tr", "uk", "pl", "vi"})
_GROUPED = {",": re.compile(r"-?(\d{1,3}(,\d{3})+|\d{1,2}(,\d{2})+,\d{3})"),  # 1,234,567 and 1,00,000 (Indian)
            ".": re.compile(r"-?\d{1,3}(\.\d{3})+")}
_SEPARATORS = re.compile(r"[\s\u00a0\u202f\u2009_']")  # 1 234 / 1'234 thousands spacing


def read_number(value: Any, lang: str | None = None) -> float | tuple[float, float] | None:
    """A gold answer as a finite number, read the way `lang` writes numbers (None/"en": 1,234.5).

    A separator that cannot group thousands is a decimal point ("3,5" and "8.0" are 3.5 and 8.0 in any
    language); with both, the last one is. A tuple (decimal reading, thousands reading) when a decimal-comma
    language's row has one separator before exactly three digits: "5,600" (German 5.6, or an English-
    formatted 5600?) or "1.234" (1234, or 1.234?). None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    s = _SEPARATORS.sub("", value.strip()).lstrip("+")
    if not re.fullmatch(r"-?[\d.,]*\d[\d.,]*", s):
        try:  # 1e3 and the like; never inf/nan
            v = float(s)
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    if "," in s and "." in s:  # both: the last one is the decimal separator, the other groups thousands
        last = max(s.rfind(","), s.rfind("."))
        d, t = s[last], "." if s[last] == "," else ","
        head, tail = s[:last], s[last + 1:]
        if d in head or not tail or not (head.lstrip("-").isdigit() or _GROUPED[t].fullmatch(head)):
            return None
        return float(head.replace(t, "") + "." + tail)
    sep = "," if "," in s else "." if "." in s else ""
    if not sep:
        return float(s)
    grouped = float(s.replace(sep, "")) if _GROUPED[sep].fullmatch(s) else None
    if s.count(sep) > 1:
        return grouped
    head, tail = s.split(sep)
    if not tail or not head.lstrip("-"):
        return None if not tail else float(s.replace(sep, "."))
    decimal = float(head + "." + tail)
    if grouped is None:  # "3,5", "8.0": no thousands reading, whatever the language's convention
        return decimal
    if lang in DECIMAL_COMMA:  # "5,600" / "1.234": German 5.6 / 1234, or English-formatted 5600 / 1.234?
        return (decimal, grouped)
    return grouped if sep == "," else decimal


def parse_gold(value: Any, lang: str | None = None) -> float | None:
    """A finite number from 18, 18.0, "18", "1,234", " 7.5 ", "3,5" (de/fr/...: 3.5); None when it is not
    one, or when `lang`'s number format leaves it ambiguous (see read_number)."""
    v = read_number(value, lang)
    return v if isinstance(v, float) else None


def encoding_problem(text: str) -> str | None:
    """Why `text` looks broken: replacement characters, control characters, or UTF-8 read as Latin-1."""
    if "\ufffd" in text:
        return "contains U+FFFD replacement characters (text was decoded wrongly upstream)"
    ctrl = _CTRL.findall(text)
    if ctrl:
        return f"contains {len(ctrl)} control character(s)"
    if _MOJIBAKE.search(text):  # cheap pre-filter; the round trip below confirms
        for enc in ("cp1252", "latin-1"):
            try:
                fixed = text.encode(enc).decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
            if fixed != text:
                return f"mojibake (UTF-8 read as {enc}: {text[:30]!r} is really {fixed[:30]!r})"
    return None


def _check(row: dict[str, Any], *, require_gold: bool, require_answer: bool, max_chars: int,
           allowed_langs: set[str] | None) -> tuple[str, str] | None:
    if row.get("_error"):
        return row["_error"], row.get("_detail", "")
    missing = [f for f in ("problem_id", "lang", "question") if not isinstance(row.get(f), str) or not row[f].strip()]
    if require_answer and (not isinstance(row.get("answer"), str) or not row["answer"].strip()):
        missing.append("answer")
    if require_gold and row.get("gold") in (None, ""):
        missing.append("gold")
    if missing:
        return "missing_field", f"missing or empty field(s): {', '.join(missing)}"
    lang = row["lang"]
    if lang not in L.NAMES:
        return "unknown_lang", f"unknown language code {lang!r}"
    if allowed_langs is not None and lang not in allowed_langs:
        return "unknown_lang", f"language {lang!r} was not requested ({', '.join(sorted(allowed_langs))})"
    if row.get("gold") not in (None, "") and read_number(row["gold"], row.get("_numbers") or lang) is None:
        return "bad_gold", f"gold is not a number: {str(row['gold'])[:40]!r}"
    for f in ("question", "answer"):
        v = row.get(f)
        if v is not None and not isinstance(v, str):
            return "missing_field", f"{f} is not text: {type(v).__name__}"
        problem = encoding_problem(v) if v else None
        if problem:
            return "encoding", f"{f} {problem}"
    if not L.script_matches(row["question"], lang):
        script = "/".join(L.SCRIPTS.get(lang, ("LATIN",)))
        share = L.script_share(row["question"], lang)
        return "script_mismatch", f"question labelled {lang} has only {share:.0%} {script} letters"
    n = len(row["question"]) + len(row.get("answer") or "")
    if n > max_chars:
        return "too_long", f"question + answer are {n} characters (max {max_chars})"
    return None


def _english_golds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """problem_id -> the English row's gold: what a parallel row's gold must agree with."""
    out = {}
    for r in rows:
        if r.get("lang") == "en" and not r.get("_error") and r.get("gold") not in (None, ""):
            v = read_number(r["gold"], r.get("_numbers") or "en")
            if isinstance(v, float):
                out[str(r.get("problem_id"))] = v
    return out


def _gold(row: dict[str, Any], english: float | None) -> tuple[float | None, tuple[str, str] | None]:
    """(gold, None) or (None, quarantine reason): ambiguous separators are settled by the English row of
    the same problem when there is one, else quarantined; a gold that contradicts that row is too."""
    if row.get("gold") in (None, ""):
        return None, None
    v = read_number(row["gold"], row.get("_numbers") or row["lang"])
    if isinstance(v, tuple):
        match = [x for x in v if english is not None and math.isclose(x, english)]
        if not match:
            return None, ("bad_gold", f"ambiguous number {row['gold']!r} in a {row['lang']} row: {v[0]:g} "
                                      f"(decimal comma) or {v[1]:g} (thousands separator)? write it without "
                                      "a thousands separator")
        v = match[0]
    if english is not None and v is not None and not math.isclose(v, english):
        return None, ("bad_gold", f"gold {row['gold']!r} = {v:g} differs from the English row's {english:g}")
    return v, None


def validate_rows(rows: list[dict[str, Any]], *, langs: list[str] | None = None, what: str = "data",
                  require_gold: bool = True, require_answer: bool = False, max_chars: int = MAX_CHARS,
                  dedupe_text: bool = True, restrict_langs: bool = False) -> ValidationResult:
    """Check raw rows (see slam.data.loaders); quarantine bad ones with a reason.

    langs: languages that must end up non-empty. restrict_langs: also quarantine rows of other languages.
    dedupe_text: also treat the same question text twice in one language as a duplicate (off for eval
    sets, where two different problems may share a translation).
    """
    if not rows:
        raise SlamError(f"{what}: no rows to read (empty file?)")
    res = ValidationResult()
    seen_key: dict[tuple[str, str], str] = {}
    seen_text: dict[tuple[str, str], str] = {}
    allowed = set(langs) if (langs and restrict_langs) else None
    english = _english_golds(rows)
    for row in rows:
        bad = _check(row, require_gold=require_gold, require_answer=require_answer, max_chars=max_chars,
                     allowed_langs=allowed)
        gold = None
        if bad is None:
            key = (row["problem_id"], row["lang"])
            text_key = (row["lang"], " ".join(row["question"].split()))
            if key in seen_key:
                bad = ("duplicate", f"same problem_id and language as {seen_key[key]}")
            elif dedupe_text and text_key in seen_text:
                bad = ("duplicate", f"same question text as {seen_text[text_key]}")
            else:
                gold, bad = _gold(row, english.get(row["problem_id"]) if row["lang"] != "en" else None)
        if bad:
            clean = {k: v for k, v in row.items() if not k.startswith("_")}
            res.quarantine.append({"reason": bad[0], "detail": bad[1], "where": row.get("_where", ""), "row": clean})
            continue
        rid = str(row.get("id") or f"{row['problem_id']}-{row['lang']}")
        seen_key[key] = rid
        seen_text.setdefault(text_key, rid)
        res.records.append(Record(id=rid, problem_id=row["problem_id"], lang=row["lang"], question=row["question"],
                                  answer=row.get("answer") or None, gold=gold, source=str(row.get("source") or "")))
    by_lang = Counter(r.lang for r in res.records)
    res.summary = {"read": len(rows), "kept": len(res.records), "quarantined": len(res.quarantine),
                   "by_reason": dict(Counter(q["reason"] for q in res.quarantine).most_common()),
                   "by_lang": dict(sorted(by_lang.items()))}
    assert res.summary["read"] == res.summary["kept"] + res.summary["quarantined"]
    if not res.records:
        first = res.quarantine[0]
        raise SlamError(f"{what}: all {len(rows)} rows rejected (e.g. {first['where']}: {first['reason']}: "
                        f"{first['detail']})")
    empty = [x for x in (langs or []) if by_lang.get(x, 0) == 0]
    if empty:
        raise SlamError(f"{what}: language(s) {', '.join(empty)} ended up with no valid rows "
                        f"({res.line()})")
    return res
