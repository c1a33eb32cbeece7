"""The synthetic world: deterministic, parallel, correct golds, all templates and languages, no split leaks.

Run: .venv/bin/python -m pytest -q tests/test_data_synth.py
"""

import re
import time
from collections import Counter

import pytest

from slam import langs as L
from slam.data.build import read_examples, read_manifest
from slam.data.lexicon import LANGS, ru_form
from slam.data.synth import generate, synth, synth_splits
from slam.data.templates import TEMPLATES
from slam.errors import SlamError

EQ = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


@pytest.fixture(scope="module")
def problems():
    return generate(20 * len(TEMPLATES), seed=7)


def test_world_size_and_languages(problems):
    assert len(TEMPLATES) >= 15 and len(LANGS) >= 8
    assert {"zh", "ja", "ru", "th", "sw"} <= set(LANGS)
    assert {t.steps for t in TEMPLATES} == {1, 2}
    ops = "".join(op for t in TEMPLATES for p in problems if p["en"].source == f"synth/{t.key}"
                  for _, op, _, _ in EQ.findall(p["en"].answer))
    assert set(ops) == set("+-*/")
    assert Counter(p["en"].source for p in problems) == {f"synth/{t.key}": 20 for t in TEMPLATES}
    assert all(set(p) == set(LANGS) for p in problems)


def test_deterministic_by_seed():
    a, b, c = generate(200, seed=3), generate(200, seed=3), generate(200, seed=4)
    assert [p["de"].to_dict() for p in a] == [p["de"].to_dict() for p in b]
    assert [p["en"].question for p in a] != [p["en"].question for p in c]


def test_gold_is_recomputed_from_the_chain_of_thought(problems):
    for p in problems:
        en = p["en"]
        steps = EQ.findall(en.answer)
        assert 1 <= len(steps) <= 2, en.answer
        for a, op, b, r in steps:
            a, b, r = int(a), int(b), int(r)
            exact = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
            assert exact == r, en.answer  # integer results, division exact
        assert en.answer.endswith(f"The answer is {int(en.gold)}.")
        assert float(steps[-1][3]) == en.gold and en.gold >= 0 and en.gold == int(en.gold)


def test_translations_are_parallel_and_in_their_script(problems):
    for p in problems:
        nums = sorted(re.findall(r"\d+", p["en"].question))
        golds = {r.gold for r in p.values()}
        assert len(golds) == 1 and len({r.problem_id for r in p.values()}) == 1
        for lang, r in p.items():
            # ja price problems say "1個3ドル" (one-piece price); other languages state the same numbers
            got = [n for n in re.findall(r"\d+", r.question) if not (lang == "ja" and n == "1")]
            assert sorted(got) == nums, (lang, r.question, p["en"].question)
            assert L.script_matches(r.question, lang), (lang, r.question)
            assert "{" not in r.question and "None" not in r.question


def test_small_numbers_for_a_small_model(problems):
    assert max(int(n) for p in problems for n in re.findall(r"\d+", p["en"].question)) <= 60
    assert max(p["en"].gold for p in problems) <= 60


@pytest.mark.parametrize("n,form", [(1, "яблоко"), (2, "яблока"), (4, "яблока"), (5, "яблок"), (11, "яблок"),
                                    (14, "яблок"), (21, "яблоко"), (22, "яблока"), (25, "яблок"), (111, "яблок")])
def test_russian_number_agreement(n, form):
    assert ru_form(n, ("яблоко", "яблока", "яблок")) == form


def test_no_problem_or_question_leaks_across_splits():
    sp = synth_splits(n_train=400, n_val=40, n_test=60, n_probe=20, seed=1)
    ids = {s: {p["en"].problem_id for p in ps} for s, ps in sp.items()}
    texts = {s: {p["en"].question for p in ps} for s, ps in sp.items()}
    names = list(sp)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not ids[a] & ids[b] and not texts[a] & texts[b], (a, b)
    # test set is stable when the training set grows
    bigger = synth_splits(n_train=800, n_val=40, n_test=60, n_probe=20, seed=1)
    assert [p["zh"].question for p in bigger["test"]] == [p["zh"].question for p in sp["test"]]


def test_synth_output_follows_the_built_dataset_format(tmp_path):
    out = tmp_path / "synth"
    m = synth(str(out), n_train=50, n_val=10, n_test=12, n_probe=8, seed=0, translation_ratio=0.5)
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "manifest.json", "probe.jsonl", "test.jsonl",
                                                     "train.jsonl", "val.jsonl"]
    assert read_manifest(str(out)) == m
    train, val = read_examples(str(out), "train"), read_examples(str(out), "val")
    assert set(train[0]) == {"id", "problem_id", "lang", "task", "instruction", "response", "gold"}
    tasks = Counter((e["lang"] == "en", e["task"]) for e in train)
    assert tasks[(True, "cot")] == 50 and tasks[(False, "cot")] == 50 * 8
    assert tasks[(False, "translate")] == 200 and tasks[(True, "translate")] == 0  # ratio 0.5 of 400
    assert all(e["response"].endswith(f"The answer is {int(e['gold'])}.") for e in train if e["task"] == "cot")
    tr = next(e for e in train if e["task"] == "translate")
    assert tr["instruction"].startswith("Translate the following sentences from ") and "?" in tr["response"]
    assert not {e["problem_id"] for e in train} & {e["problem_id"] for e in val}
    test = read_examples(str(out), "test")
    assert len(test) == 12 * 9 and {"question", "answer", "gold"} <= set(test[0])
    assert m["counts"]["train"]["by_lang"]["de"] == {"cot": 50, "translate": m["counts"]["train"]["by_lang"]["de"]
                                                     .get("translate", 0)}
    assert m["records"]["test"] == {lang: 12 for lang in sorted(LANGS)}
    assert m["seed"] == 0 and len(m["sources"]) == 3 and m["problems"]["train"] == 50


def test_language_subset_keeps_english_as_translation_target(tmp_path):
    m = synth(str(tmp_path / "s"), langs=["zh", "sw"], n_train=20, n_val=2, n_test=3, n_probe=2)
    train = read_examples(str(tmp_path / "s"), "train")
    assert {e["lang"] for e in train} == {"zh", "sw"}
    assert any(e["task"] == "translate" for e in train)
    assert m["records"]["test"] == {"sw": 3, "zh": 3}


def test_generation_is_fast():
    t = time.process_time()
    generate(3000, seed=0)
    assert time.process_time() - t < 2.0


@pytest.mark.parametrize("kw,msg", [({"langs": ["en", "xx"]}, "no language"), ({"n_train": 0}, "n_train"),
                                    ({"n_test": -1}, "n_test"), ({"translation_ratio": 1.5}, "translation ratio")])
def test_bad_synth_arguments(kw, msg, tmp_path):
    with pytest.raises(SlamError, match=msg):
        synth(str(tmp_path / "x"), **{"n_train": 5, "n_val": 1, "n_test": 1, "n_probe": 1, **kw})


def test_synth_cli(tmp_path, capsys):
    from slam.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--n-train", "30", "--n-val", "5", "--n-test", "6",
                 "--langs", "en,de,th"]) == 0
    out = capsys.readouterr().out
    assert "train: 150 examples from 30 problems (de 60, en 30, th 60)" in out
    assert "test: 18 records" in out
    assert main(["data", "synth", "--out", str(tmp_path / "t"), "--langs", "en,klingon"]) == 2
    assert "klingon" in capsys.readouterr().err
