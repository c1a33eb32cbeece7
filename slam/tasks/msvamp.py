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

from slam.tasks import extract_number, is_correct, select

NAME = "msvamp"
LANGS = ("en", "bn", "de", "es", "fr", "ja", "ru", "sw", "th", "zh")
MAX_NEW_TOKENS = 300


def load(root: str, langs: list[str] | None = None, limit: int | None = None) -> list:
    """Records of the MSVAMP test set under `root` (a dir of test_<Language>.json, local or s3://)."""
    from slam.data.loaders import load_msvamp

    return select(load_msvamp(root, langs=langs or None), langs, limit, NAME)


def extract_answer(text: str) -> float | None:
    return extract_number(text)


def evaluate(record, completion: str) -> bool:
    return is_correct(extract_answer(completion), record.gold)
