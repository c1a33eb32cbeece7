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

from slam.tasks import extract_number, is_correct, select

NAME = "mgsm"
LANGS = ("en", "bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
MAX_NEW_TOKENS = 600


def load(root: str, langs: list[str] | None = None, limit: int | None = None) -> list:
    """Records of the MGSM test set under `root` (a dir of mgsm_<lang>.tsv, local or s3://)."""
    from slam.data.loaders import load_mgsm

    return select(load_mgsm(root, langs=langs or None), langs, limit, NAME)


def extract_answer(text: str) -> float | None:
    return extract_number(text)


def evaluate(record, completion: str) -> bool:
    return is_correct(extract_answer(completion), record.gold)
