"""The synthetic multilingual arithmetic world (`slam data synth`): its held-out `test.jsonl`.

    from slam.tasks import synthetic
    records = synthetic.load("runs/synth", langs=["en", "zh"], limit=20)
    synthetic.evaluate(records[0], "5 + 3 = 8 apples. The answer is 8.")

Items are Record JSONL rows, parallel across languages by problem_id, e.g. {"id": "syn-0007-de",
"problem_id": "syn-0007", "lang": "de", "question": "Lena hat 5 Äpfel ...", "answer": "<English CoT>
The answer is 8.", "gold": 8.0, "source": "synthetic"}. The test problems are disjoint from the
train/val problems. One- and two-step problems, so 160 new tokens are plenty.
"""

from __future__ import annotations

from slam.tasks import extract_number, is_correct, select

NAME = "synthetic"
MAX_NEW_TOKENS = 160
SPLIT = "test.jsonl"


def load(data_dir: str, langs: list[str] | None = None, limit: int | None = None, exclude=()) -> list:
    """Records of `<data_dir>/test.jsonl` (a `slam data synth` output dir, local or s3://)."""
    from slam import storage
    from slam.data.loaders import read_records

    held_out = set(exclude)
    records = [r for r in read_records(storage.join(data_dir, SPLIT)) if r.problem_id not in held_out]
    return select(records, langs, limit, NAME)


def extract_answer(text: str) -> float | None:
    return extract_number(text)


def evaluate(record, completion: str) -> bool:
    return is_correct(extract_answer(completion), record.gold)
