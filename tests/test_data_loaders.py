"""Loaders on the real files in ../shared/data (skipped when absent), GSM8K conversion, generic formats, S3.

Run: .venv/bin/python -m pytest -q tests/test_data_loaders.py        (real build: -m slow)
"""

import json
from collections import Counter

import pytest

from slam.data import loaders as Ld
from slam.data.build import read_examples
from slam.data.records import Record, to_jsonl

MGSM_LANGS = ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]
MSVAMP_LANGS = ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "th", "zh"]


def test_mgsm_tsv_exact_counts_and_parallel_ids(shared_data):
    recs = Ld.load_mgsm(str(shared_data / "mgsm"))
    assert Counter(r.lang for r in recs) == {lang: 250 for lang in MGSM_LANGS}
    by_pid = {r.problem_id: r.gold for r in recs if r.lang == "en"}
    assert all(by_pid[r.problem_id] == r.gold for r in recs)  # same problem, same answer, every language
    first = next(r for r in recs if r.id == "mgsm-0-en")
    assert first.question.startswith("Janet") and first.gold == 18.0 and first.answer is None


def test_mathoctopus_json_matches_the_tsv(shared_data):
    tsv = {r.problem_id: r for r in Ld.load_mgsm(str(shared_data / "mgsm"), ["ja"])}
    mo = Ld.load_mathoctopus_jsonl(str(shared_data / "mgsm" / "mathoctopus_json" / "mgsm_Japanese.json"), "ja")
    assert len(mo) == 250 and {r.problem_id for r in mo} == set(tsv)
    assert sum(tsv[r.problem_id].gold == r.gold for r in mo) == 250


def test_msvamp_exact_counts(shared_data):
    recs = Ld.load_msvamp(str(shared_data / "msvamp"))
    assert Counter(r.lang for r in recs) == {lang: 1000 for lang in MSVAMP_LANGS}
    en = {r.problem_id: r.gold for r in recs if r.lang == "en"}
    assert all(en[r.problem_id] == r.gold for r in recs)


def test_gsm8k_cot_conversion(shared_data):
    train = Ld.load_gsm8k(str(shared_data / "gsm8k" / "train.jsonl"))
    test = Ld.load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"))
    assert (len(train), len(test)) == (7473, 1319)
    for r in train:
        assert "<<" not in r.answer and "####" not in r.answer
        n = r.answer.rsplit("The answer is ", 1)[1].rstrip(".")
        assert float(n) == r.gold
    assert train[0].answer.endswith("72 clips altogether in April and May.\nThe answer is 72.")


def test_qalign_pairs_share_problem_ids_with_their_english(shared_data):
    recs = Ld.load_qalign(str(shared_data / "qalign_gsmtrans"), ["sw"])
    sw = [r for r in recs if r.lang == "sw"]
    en = {r.problem_id for r in recs if r.lang == "en"}
    assert 7400 < len(sw) <= 7469 and all(r.problem_id in en for r in sw)


@pytest.mark.parametrize("line,cot,gold", [
    ("a=<<1+1=2>>2\n#### 2", "a=2\nThe answer is 2.", "2"),
    ("He pays $<<3*5=15>>15.\nThen 1,000.\n#### 1,000", "He pays $15.\nThen 1,000.\nThe answer is 1000.", "1000"),
    ("no final line", None, None),
])
def test_gsm8k_answer_table(line, cot, gold):
    got = Ld.gsm8k_cot(line)
    assert got == (None if cot is None else (cot, gold))


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_generic_formats_with_a_field_mapping(ext, tmp_path):
    rows = [{"q": "Anna hat 3 Äpfel.", "a": "3", "l": "de"}, {"q": "安娜有3个苹果。", "a": "3", "l": "zh"}]
    f = tmp_path / f"x.{ext}"
    if ext == "jsonl":
        f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif ext == "json":
        f.write_text(json.dumps(rows, ensure_ascii=False))
    elif ext in ("csv", "tsv"):
        sep = "," if ext == "csv" else "\t"
        f.write_text(f"q{sep}a{sep}l\n" + "".join(sep.join(r.values()) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), f)
    recs = Ld.load_generic(str(f), {"question": "q", "gold": "a", "lang": "l"})
    assert [(r.lang, r.question, r.gold, r.problem_id) for r in recs] == [
        ("de", "Anna hat 3 Äpfel.", 3.0, "x-0"), ("zh", "安娜有3个苹果。", 3.0, "x-1")]


def test_records_roundtrip_on_s3(s3_bucket):
    from slam import storage

    recs = [Record("p1-de", "p1", "de", "Anna hat 3 Äpfel.", "3. The answer is 3.", 3.0, "t"),
            Record("p1-th", "p1", "th", "แอนนามีแอปเปิล 3 ลูก", None, 3.0, "t")]
    uri = s3_bucket + "/data/recs.jsonl"
    storage.write_text(uri, to_jsonl(recs))
    assert Ld.read_records(uri) == recs


def test_synth_dataset_on_s3_and_validate_cli_reads_s3(s3_bucket, tmp_path, capsys):
    from slam.cli import main
    from slam.data.synth import synth

    out = s3_bucket + "/synth"
    synth(out, n_train=10, n_val=2, n_test=3, n_probe=2, langs=["en", "ru"])
    assert len(read_examples(out, "train")) == 10 + 10 + 10  # en cot, ru cot, ru translate
    assert len(Ld.read_records(out + "/test.jsonl")) == 6
    assert main(["data", "validate", out + "/test.jsonl"]) == 0
    assert "read 6 = kept 6 + quarantined 0" in capsys.readouterr().out


@pytest.mark.slow
def test_real_data_build(shared_data, tmp_path, capsys):
    from slam.cli import main

    out = tmp_path / "real"
    assert main(["data", "build", "--out", str(out), "--shared-data", str(shared_data), "--langs", "sw,zh"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    train, val = read_examples(str(out), "train"), read_examples(str(out), "val")
    assert not {e["problem_id"] for e in train} & {e["problem_id"] for e in val}
    en = m["counts"]["train"]["by_lang"]["en"]["cot"] + m["counts"]["val"]["by_lang"]["en"]["cot"]
    assert en == 7473
    sw = sum(m["counts"][s]["by_lang"]["sw"]["cot"] for s in ("train", "val"))
    assert 7400 < sw <= 7469 and m["counts"]["train"]["by_lang"]["sw"]["translate"] > 7000
    # quarantine reconciles: untranslated (English) lines in the zh file are counted, not dropped
    q = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().split("\n") if x]
    assert len(q) == m["quarantined"] and any(x["reason"] == "script_mismatch" for x in q)
    assert m["validation"]["qalign"]["read"] == m["validation"]["qalign"]["kept"] + m["validation"]["qalign"]["quarantined"]
    assert set(m["sources"]) >= {"gsm8k/train.jsonl"} and m["seed"] == 0
    cot = next(e for e in train if e["lang"] == "zh" and e["task"] == "cot")
    assert cot["response"].endswith(f"The answer is {cot['gold']:g}.") or "The answer is" in cot["response"]
