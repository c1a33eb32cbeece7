"""Benchmarks for `slam evaluate`: one small module per task, all judged the same way.

    from slam import tasks
    task = tasks.get("mgsm")                       # module with load / extract_answer / evaluate / MAX_NEW_TOKENS
    records = task.load("../shared/data/mgsm", langs=["en", "de"], limit=20)
    tasks.extract_number("so 3 + 5 = 8. The answer is 1,234.")   # -> 1234.0

Answer extraction follows the MathOctopus/QAlign math harness (the one SLAM reports with,
`MathOctopus/step1_supervised_finetuning/generate_and_eval.py`): strip thousands separators, take the
LAST number in the completion, correct if |pred - gold| < 1e-3. Two deliberate differences:
- the minus sign is kept ("-5" is -5; their `\\d+(\\.\\d+)?` turns it into 5, so a wrong sign scores as
  right there). A '-' glued to a preceding digit is subtraction ("10-5"), not a sign.
- only real thousands separators are stripped (",ddd" groups): "1,2,3" is three numbers, not 123.
Digits glued to a preceding Latin letter ("H2O", "x2", "mp3") are part of a word, not numbers.
"""

from __future__ import annotations

import re
from types import ModuleType

NAMES = ("mgsm", "msvamp", "synthetic")
TOLERANCE = 1e-3

# The answer sentence every training row ends with: "The answer is 8." / "The answer is -1,234.5".
ANSWER_SENTENCE = r"The answer is\s*[-\u2212]?\d[\d,]*(?:\.\d+)?"
# That sentence, its period and one more character: the answer is complete ("The answer is 1" may still
# become 12, "1." may still become 1.5). A stop pattern for generation wherever only the answer counts
# (the study, Tune's validation accuracy); never in `slam evaluate`, whose completions match peer tools'.
ANSWER_DONE = ANSWER_SENTENCE + r"\.\s"

# A comma between digits followed by exactly three digits (and no fourth) is a thousands separator.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# Optional sign (ASCII hyphen or U+2212 minus); nothing of a word or number (Latin letter, digit, '.')
# right before the match, so the '-' in "10-5" is subtraction and "H2O" holds no number.
_NUMBER = re.compile(r"(?<![A-Za-z\d.])[-\u2212]?\d+(?:\.\d+)?")


def extract_number(text: str | None) -> float | None:
    """The last number in `text` as a float, or None when there is none."""
    if not text:
        return None
    found = _NUMBER.findall(_THOUSANDS.sub("", text))
    if not found:
        return None
    return float(found[-1].replace("\u2212", "-"))


def is_correct(pred: float | None, gold: float | None) -> bool:
    return pred is not None and gold is not None and abs(pred - gold) < TOLERANCE


def get(name: str) -> ModuleType:
    """The task module for `name` (mgsm, msvamp, synthetic)."""
    from slam.tasks import mgsm, msvamp, synthetic

    modules = {"mgsm": mgsm, "msvamp": msvamp, "synthetic": synthetic}
    if name not in modules:
        from slam.errors import SlamError

        raise SlamError(f"unknown task {name!r}; choose one of {', '.join(NAMES)}")
    return modules[name]


def select(records: list, langs: list[str] | None, limit: int | None, task: str) -> list:
    """Keep `langs` (all when None/empty), then the first `limit` questions of each language in file
    order (the same problems in every language, since rows are parallel)."""
    from slam.errors import SlamError

    have = list(dict.fromkeys(r.lang for r in records))
    if langs:
        missing = [lang for lang in langs if lang not in have]
        if missing:
            raise SlamError(f"{task} has no questions in {', '.join(missing)} (it has: {', '.join(have) or 'none'})")
        records = [r for r in records if r.lang in set(langs)]
    if limit is not None:
        if limit < 1:
            raise SlamError(f"limit must be >= 1 question per language, got {limit}")
        seen: dict[str, int] = {}
        kept = []
        for r in records:
            if seen.get(r.lang, 0) < limit:
                seen[r.lang] = seen.get(r.lang, 0) + 1
                kept.append(r)
        records = kept
    return records
