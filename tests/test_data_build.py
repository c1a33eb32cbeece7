"""Training-set builder: cot + translate tasks, mixing ratio, split by problem_id (no leaks), output format.

Run: .venv/bin/python -m pytest -q tests/test_data_build.py
"""

import json
from collections import Counter

import pytest

from slam.data.build import make_examples, read_examples, split_by_problem
from slam.data.records import Record, to_jsonl
from slam.errors import SlamError


def world(n: int) -> list[Record]:
    out = []
    for i in range(n):
        pid = f"p{i}"
        out.append(Record(f"{pid}-en", pid, "en", f"Tom has {i + 2} apples. How many?",
                          f"Tom has {i + 2}. The answer is {i + 2}.", float(i + 2), "t"))
        out.append(Record(f"{pid}-de", pid, "de", f"Tom hat {i + 2} Äpfel. Wie viele?", None, float(i + 2), "t"))
        out.append(Record(f"{pid}-zh", pid, "zh", f"汤姆有{i + 2}个苹果。有多少个？", None, float(i + 2), "t"))
    return out


@pytest.mark.parametrize("ratio,n_translate", [(0.0, 0), (0.5, 10), (1.0, 20)])
def test_tasks_and_mixing_ratio(ratio, n_translate):
    ex, q = make_examples(world(10), translation_ratio=ratio, seed=0)
    c = Counter((e["lang"], e["task"]) for e in ex)
    assert c[("en", "cot")] == 10 and c[("de", "cot")] == 10 and c[("zh", "cot")] == 10
    assert c[("de", "translate")] + c[("zh", "translate")] == n_translate and c[("en", "translate")] == 0
    assert not q
    de_cot = next(e for e in ex if e["id"] == "p3-de-cot")
    assert de_cot["instruction"] == "Tom hat 5 Äpfel. Wie viele?" and de_cot["response"].endswith("The answer is 5.")
    if ratio:
        tr = next(e for e in ex if e["task"] == "translate" and e["lang"] == "zh")
        assert tr["instruction"].startswith("Translate the following sentences from Chinese to English.\n汤姆")
        assert tr["response"].startswith("Tom has ")


def test_rows_without_an_english_side_are_quarantined_not_dropped():
    recs = [r for r in world(3) if not (r.problem_id == "p1" and r.lang == "en")]
    ex, q = make_examples(recs, translation_ratio=1.0)
    assert {x["id"] for x in q} == {"p1-de", "p1-zh"}  # no CoT for p1 anywhere
    assert all(x["reason"].startswith("no English chain-of-thought") for x in q)
    assert len(ex) == 2 * (1 + 2 + 2)


def test_ratio_out_of_range_is_an_error():
    with pytest.raises(SlamError, match="translation ratio"):
        make_examples(world(2), translation_ratio=2.0)


@pytest.mark.parametrize("n,frac,expected", [(100, 0.05, 5), (10, 0.0, 0), (3, 0.9, 2), (1, 0.5, 0)])
def test_split_by_problem_sizes(n, frac, expected):
    ids = [f"p{i}" for i in range(n)]
    val = split_by_problem(ids, frac, seed=0)
    assert len(val) == expected and val <= set(ids)
    assert split_by_problem(ids, frac, seed=0) == val  # deterministic


def test_build_from_records_cli_splits_by_problem(tmp_path, capsys):
    from slam.cli import main

    src = tmp_path / "recs.jsonl"
    bad = Record("p99-zh", "p99", "zh", "Latin text in a zh row", None, 1.0, "t")
    src.write_text(to_jsonl(world(40) + [bad]), encoding="utf-8")
    out = tmp_path / "ds"
    assert main(["data", "build", "--out", str(out), "--records", str(src), "--val-fraction", "0.25",
                 "--translation-ratio", "1"]) == 0
    train, val = read_examples(str(out), "train"), read_examples(str(out), "val")
    assert not {e["problem_id"] for e in train} & {e["problem_id"] for e in val}
    assert len({e["problem_id"] for e in val}) == 10
    for split in (train, val):  # every language of a problem is in the same split
        by_pid = Counter(e["problem_id"] for e in split)
        assert set(by_pid.values()) == {5}  # en cot, de cot, zh cot, de translate, zh translate
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["train"]["by_lang"]["zh"] == {"cot": 30, "translate": 30}
    assert m["quarantined"] == 1 and m["validation"]["by_reason"] == {"script_mismatch": 1}
    assert list(m["sources"]) == [str(src)] and len(m["sources"][str(src)]) == 64
    q = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert q[0]["reason"] == "script_mismatch" and q[0]["row"]["id"] == "p99-zh"
    assert "quarantined: 1" in capsys.readouterr().out


def test_read_examples_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(SlamError, match="no test split"):
        read_examples(str(tmp_path), "test")


def test_unicode_line_separators_inside_text_survive_a_round_trip(tmp_path):
    from slam.data.build import write_dataset

    # GSM8K train has a question with U+2028 in it; str.splitlines() would cut the JSON line there
    recs = world(2)
    recs[0] = Record("p0-en", "p0", "en", "Tom has\u2028 2 apples.", "The answer is 2.", 2.0, "t")
    ex, _ = make_examples(recs)
    write_dataset(str(tmp_path / "d"), {"train": ex}, {})
    assert sorted(e["id"] for e in read_examples(str(tmp_path / "d"), "train")) == sorted(e["id"] for e in ex)
