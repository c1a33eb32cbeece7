"""MGSM (Shi et al. 2022): 250 GSM8K test problems translated into 10 languages, plus English.

    from slam.tasks import mgsm
    records = mgsm.load("../shared/data/mgsm", langs=["en", "sw"], limit=10)
    mgsm.evaluate(records[0], "... so she makes 9 * 2 = 18 dollars. The answer is 18.")   # True

Example item (mgsm_en.tsv, `question<TAB>answer_number`): "Janet's ducks lay 16 eggs per day. ... How
much in dollars does she make every day at the farmers' market?" -> 18. Row i is the same problem
in every language (problem_id "mgsm-<i>"). Protocol (MathOctopus/QAlign/SLAM): Alpaca prompt, greedy,
600 new tokens, last number of the completion (see slam.tasks for the normalisation).
"""

from __future__ import annotations

import sys

from slam.tasks import extract_number, is_correct, select

NAME = "mgsm"
LANGS = ("en", "bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
MAX_NEW_TOKENS = 600

HF_COLUMNS = {"question": "question", "gold": "answer_number"}
"""Column names in the hub copy (`hf:...`: configs named by language code, split `test`)."""


def native_file(lang: str) -> str:
    return f"mgsm_{lang}.tsv"


def raw_native(root: str, langs: list[str]) -> list:
    from slam.data.loaders import raw_mgsm

    return raw_mgsm(root, langs)


def load(source: str, langs: list[str] | None = None, limit: int | None = None, exclude=()) -> list:
    """Records of MGSM from `source` (slam.tasks.sources: a dir or s3:// prefix of its files, a
    test_mgsm.jsonl, or hf:org/name), minus the problem_ids in `exclude` (held out for probing)."""
    from slam.tasks.sources import read_benchmark

    held_out = set(exclude)
    records = [r for r in read_benchmark(sys.modules[__name__], source, langs or None) if r.problem_id not in held_out]
    return select(records, langs, limit, NAME)


def extract_answer(text: str) -> float | None:
    return extract_number(text)


def evaluate(record, completion: str) -> bool:
    return is_correct(extract_answer(completion), record.gold)
