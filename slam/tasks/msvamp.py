"""MSVAMP (MathOctopus, Chen et al. 2023): 1,000 SVAMP problems in 10 languages (no Telugu).

    from slam.tasks import msvamp
    records = msvamp.load("../shared/data/msvamp", langs=["en", "zh"], limit=10)
    msvamp.evaluate(records[0], "18 - 10 = 8. The answer is 8.")   # True for the first item

Example item (test_Chinese.json, JSON lines): {"m_query": "朱莉娅星期一和18个孩子一起玩捉迷藏。...",
"query": <English>, "equation": "- number0 number1", "response": "8.0"}; the harness feeds `m_query`.
Row i is the same problem in every language (problem_id "msvamp-<i>"). Protocol: Alpaca prompt,
greedy, 300 new tokens, last number of the completion (see slam.tasks for the normalisation).
"""

from __future__ import annotations

import sys

from slam.tasks import extract_number, is_correct, select

NAME = "msvamp"
LANGS = ("en", "bn", "de", "es", "fr", "ja", "ru", "sw", "th", "zh")
MAX_NEW_TOKENS = 300

HF_COLUMNS = {"question": "m_query", "gold": "response"}
"""Column names in the hub copy (`hf:...`: configs named by language code, split `test`)."""


def native_file(lang: str) -> str:
    from slam import langs as L

    return f"test_{L.name(lang)}.json"


def raw_native(root: str, langs: list[str]) -> list:
    from slam.data.loaders import raw_msvamp

    return raw_msvamp(root, langs)


def load(source: str, langs: list[str] | None = None, limit: int | None = None, exclude=()) -> list:
    """Records of MSVAMP from `source` (slam.tasks.sources: a dir or s3:// prefix of its files, a
    test_msvamp.jsonl, or hf:org/name), minus the problem_ids in `exclude` (held out for probing)."""
    from slam.tasks.sources import read_benchmark

    held_out = set(exclude)
    records = [r for r in read_benchmark(sys.modules[__name__], source, langs or None) if r.problem_id not in held_out]
    return select(records, langs, limit, NAME)


def extract_answer(text: str) -> float | None:
    return extract_number(text)


def evaluate(record, completion: str) -> bool:
    return is_correct(extract_answer(completion), record.gold)
