"""The one record schema for multilingual reasoning data.

    rec = Record(id="mgsm-3-de", problem_id="mgsm-3", lang="de", question="...", answer=None, gold=18.0,
                 source="mgsm")
    line = json.dumps(rec.to_dict()); Record.from_dict(json.loads(line)) == rec

`problem_id` is shared by every translation of one problem, so splits and parallel probing can group
by it. `answer` is an English chain of thought (absent in evaluation sets); `gold` is the number.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from slam.errors import SlamError

FIELDS = ("id", "problem_id", "lang", "question", "answer", "gold", "source")


@dataclass(frozen=True)
class Record:
    id: str
    problem_id: str
    lang: str
    question: str
    answer: str | None
    gold: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        missing = [f for f in ("id", "problem_id", "lang", "question") if f not in d]
        if missing:
            raise SlamError(f"record is missing field(s) {', '.join(missing)}: {str(d)[:120]}")
        gold = d.get("gold")
        return cls(id=str(d["id"]), problem_id=str(d["problem_id"]), lang=str(d["lang"]),
                   question=d["question"], answer=d.get("answer"),
                   gold=float(gold) if gold is not None else None, source=str(d.get("source", "")))


def to_jsonl(records: list[Record]) -> str:
    return "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
