"""Benchmarks (slam.tasks): answer extraction, scoring, language/limit selection, loading the real files.

    .venv/bin/python -m pytest -q tests/test_tasks.py
"""

import json

import pytest

from slam import tasks
from slam.errors import SlamError

EXTRACT_CASES = [
    # (completion, expected number) — the last number wins
    ("The answer is 18.", 18.0),
    ("She sells 16 - 3 - 4 = 9 eggs, so 9 * 2 = 18 dollars. The answer is 18", 18.0),
    ("The answer is 1,234.", 1234.0),
    ("Total: $1,234,567.50", 1234567.5),
    ("He pays 80,000 + 50,000 = 130,000 dollars", 130000.0),
    ("The temperature is -5 degrees.", -5.0),
    ("The change is \u22127.", -7.0),  # U+2212 minus sign
    ("so x = (-12)", -12.0),
    ("10-5", 5.0),  # '-' after a digit is subtraction, not a sign
    ("3 - 5 = -2", -2.0),
    ("It weighs 2.5 kg", 2.5),
    ("pi is about 3.14.", 3.14),
    ("0.5", 0.5),
    ("The answer is 7.\n\n### Instruction:", 7.0),
    ("I ate 3 apples and 4 pears; the answer is 7 (seven).", 7.0),
    ("H2O has 3 atoms", 3.0),  # digits inside a word are not numbers
    ("answer: 42 mp3", 42.0),
    ("He walked 5km", 5.0),  # a unit glued after the number is fine
    ("the 3rd day", 3.0),
    ("1,2,3", 3.0),  # not a thousands separator: three numbers
    ("12,34", 34.0),
    ("<<48/2=24>>24 clips\n#### 24", 24.0),
    ("共有5个苹果", 5.0),
    ("50%", 50.0),
    ("no number here", None),
    ("", None),
    ("version v2", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT_CASES)
def test_extract_number(text, expected):
    assert tasks.extract_number(text) == expected


@pytest.mark.parametrize("name", tasks.NAMES)
def test_every_task_uses_the_shared_extraction(name):
    mod = tasks.get(name)
    assert mod.extract_answer("so it is -1,500.5 in total.") == -1500.5
    assert mod.MAX_NEW_TOKENS == {"mgsm": 600, "msvamp": 300, "synthetic": 160}[name]


@pytest.mark.parametrize(("pred", "gold", "ok"), [
    (18.0, 18.0, True), (18.0005, 18.0, True), (18.002, 18.0, False), (-5.0, 5.0, False),
    (None, 5.0, False), (5.0, None, False), (8.0, 8, True),
])
def test_is_correct(pred, gold, ok):
    assert tasks.is_correct(pred, gold) is ok


def test_unknown_task_is_a_clear_error():
    with pytest.raises(SlamError, match="unknown task 'gsm9k'"):
        tasks.get("gsm9k")


def _rec(lang, i, gold=1.0):
    from slam.data.records import Record

    return Record(id=f"p{i}-{lang}", problem_id=f"p{i}", lang=lang, question=f"q{i} in {lang}", answer=None,
                  gold=gold, source="test")


def test_select_langs_and_limit_keep_file_order_per_language():
    recs = [_rec(lang, i) for i in range(5) for lang in ("en", "de", "zh")]
    out = tasks.select(recs, ["de", "en"], 2, "t")
    assert [r.id for r in out] == ["p0-en", "p0-de", "p1-en", "p1-de"]
    assert len(tasks.select(recs, None, None, "t")) == 15


@pytest.mark.parametrize(("langs", "limit", "message"), [
    (["en", "xx"], None, "t has no questions in xx"),
    (None, 0, "limit must be >= 1"),
])
def test_select_rejects_bad_requests(langs, limit, message):
    with pytest.raises(SlamError, match=message):
        tasks.select([_rec("en", 0)], langs, limit, "t")


def test_synthetic_loads_test_jsonl(tmp_path):
    rows = [_rec(lang, i, gold=float(i)) for i in range(4) for lang in ("en", "sw")]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    recs = tasks.get("synthetic").load(str(tmp_path), langs=["sw"], limit=3)
    assert [(r.lang, r.gold) for r in recs] == [("sw", 0.0), ("sw", 1.0), ("sw", 2.0)]
    assert tasks.get("synthetic").evaluate(recs[2], "1 + 1 = 2. The answer is 2.")


def test_synthetic_without_test_split_is_a_clear_error(tmp_path):
    with pytest.raises(SlamError):
        tasks.get("synthetic").load(str(tmp_path))


@pytest.mark.parametrize(("task", "langs", "per_lang"), [
    ("mgsm", 11, 250), ("msvamp", 10, 1000),
])
def test_real_benchmarks_load_parallel_with_gold(shared_data, task, langs, per_lang):
    mod = tasks.get(task)
    recs = mod.load(str(shared_data / task))
    counts = {}
    for r in recs:
        counts[r.lang] = counts.get(r.lang, 0) + 1
    assert sorted(counts) == sorted(mod.LANGS) and len(counts) == langs
    assert set(counts.values()) == {per_lang}
    assert all(r.gold is not None for r in recs)
    few = mod.load(str(shared_data / task), langs=["en", "zh"], limit=3)
    assert [r.lang for r in few].count("zh") == 3 and len(few) == 6
    # parallel: the i-th question is the same problem in every language
    en = [r.problem_id for r in few if r.lang == "en"]
    assert en == [r.problem_id for r in few if r.lang == "zh"]
    assert [r.gold for r in few if r.lang == "en"] == [r.gold for r in few if r.lang == "zh"]


def test_mgsm_first_english_item_scores_with_its_reference_answer(shared_data):
    r = tasks.get("mgsm").load(str(shared_data / "mgsm"), langs=["en"], limit=1)[0]
    assert "Janet" in r.question and r.gold == 18
    assert tasks.get("mgsm").evaluate(r, "She makes 9 * $2 = $18 every day. The answer is 18.")
    assert not tasks.get("mgsm").evaluate(r, "The answer is 16.")
