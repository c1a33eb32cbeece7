"""`slam data build` on the real shared data: train/val + a parallel probe set + test split(s), languages
by coverage (zero-shot, a clear error, or the user's own file for a new language).

    SLAM_SHARED_DATA=../shared/data .venv/bin/python -m pytest -q tests/test_data_real.py
"""

import csv
import json

import pytest

from slam.data.build import read_examples
from slam.data.loaders import read_records
from slam.errors import SlamError


def _build(shared, out, *args):
    from slam.cli import main

    return main(["data", "build", "--shared-data", str(shared), "--out", str(out), *args])


def test_th_has_no_training_data_so_it_is_probed_on_held_out_mgsm_and_tested_zero_shot(shared_data, tmp_path, capsys):
    out = tmp_path / "real"
    assert _build(shared_data, out, "--langs", "de,th", "--max-problems", "30", "--probe-questions", "16") == 0
    printed = capsys.readouterr().out
    assert "note: th: no training data" in printed and "zero-shot" in printed
    m = json.loads((out / "manifest.json").read_text())
    assert m["trained_langs"] == ["de", "en"] and m["zero_shot_langs"] == ["th"]
    assert set(m["counts"]["train"]["by_lang"]) == {"en", "de"}
    assert m["counts"]["train"]["problems"] + m["counts"]["val"]["problems"] == 30

    # the probe: parallel MGSM problems (the last 16), held out of the test split and named in the manifest
    probe = read_records(str(out / "probe.jsonl"))
    by_lang = {lang: [r.problem_id for r in probe if r.lang == lang] for lang in ("en", "de", "th")}
    assert by_lang["en"] == by_lang["de"] == by_lang["th"] == [f"mgsm-{i}" for i in range(234, 250)]
    assert m["probe"]["source"] == "mgsm" and m["probe"]["held_out"]["mgsm"] == by_lang["en"]
    test = read_records(str(out / "test_mgsm.jsonl"))
    assert {r.lang for r in test} == {"en", "de", "th"} and len(test) == 3 * 234
    assert not {r.problem_id for r in test} & set(by_lang["en"])
    assert m["probe"]["disjoint_from_test"]["mgsm"] == {"probe_questions": 48, "test_questions": 702,
                                                         "shared_problem_ids": 0, "shared_question_texts": 0}
    assert m["test"]["mgsm"]["held_out_for_probe"] == 16


def test_probe_from_training_translations_when_every_language_trains(shared_data, tmp_path):
    out = tmp_path / "real"
    assert _build(shared_data, out, "--langs", "zh,sw", "--max-problems", "40", "--probe-questions", "8",
                  "--test", "mgsm,msvamp") == 0
    m = json.loads((out / "manifest.json").read_text())
    probe = read_records(str(out / "probe.jsonl"))
    pids = {lang: [r.problem_id for r in probe if r.lang == lang] for lang in ("en", "zh", "sw")}
    assert len(pids["en"]) == 8 and pids["en"] == pids["zh"] == pids["sw"]
    assert all(p.startswith("gsm8k-train-") for p in pids["en"])  # GSM8K *train*: never an MGSM/MSVAMP question
    assert m["probe"]["source"] == "train" and m["probe"]["held_out"] == {}
    assert set(m["test"]) == {"mgsm", "msvamp"} and m["test"]["msvamp"]["questions_per_lang"] == 1000
    assert all(d["shared_question_texts"] == 0 for d in m["probe"]["disjoint_from_test"].values())
    # the probe problems are training problems, with the training translations
    train_pids = {e["problem_id"] for e in read_examples(str(out), "train") + read_examples(str(out), "val")}
    assert set(pids["en"]) <= train_pids


def test_a_language_no_shared_file_has_is_one_line_naming_what_exists(shared_data, tmp_path, capsys):
    assert _build(shared_data, tmp_path / "x", "--langs", "de,ko") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no data for ko" in err and "QAlign (training) has de es fr ja ru sw zh" in err and "th" in err
    assert "--user-data" in err
    assert not (tmp_path / "x").exists()


ITALIAN = [  # the first three GSM8K train questions, translated (the `english` column is GSM8K's text)
    ("Natalia ha venduto fermagli a 48 dei suoi amici ad aprile, e poi ne ha venduti la metà a maggio. "
     "Quanti fermagli ha venduto Natalia in tutto ad aprile e maggio?", 0),
    ("Weng guadagna 12 dollari all'ora facendo la babysitter. Ieri ha fatto solo 50 minuti di babysitting. "
     "Quanto ha guadagnato?", 1),
    ("Betty sta risparmiando per un nuovo portafoglio che costa 100 dollari. Betty ha solo metà dei soldi di cui "
     "ha bisogno. I suoi genitori le hanno dato 15 dollari e i nonni il doppio dei genitori. Quanti soldi "
     "mancano ancora a Betty per comprare il portafoglio?", 2),
]


def test_a_new_language_from_the_users_own_file_on_s3(shared_data, tmp_path, s3_bucket, capsys):
    from slam import storage

    gsm = [json.loads(x) for x in (shared_data / "gsm8k" / "train.jsonl").read_text().split("\n")[:3]]
    rows = [{"domanda": q, "originale": gsm[i]["question"], "cot": "", "risposta": ""} for q, i in ITALIAN]
    rows.append({"domanda": "Luca ha 3 mele e ne compra altre 4. Quante mele ha Luca?",  # not a GSM8K problem
                 "originale": "Luca has 3 apples and buys 4 more. How many apples does Luca have?",
                 "cot": "Luca has 3 + 4 = 7 apples.\nThe answer is 7.", "risposta": "7"})
    rows.append({"domanda": "", "originale": "An empty translation.", "cot": "", "risposta": ""})
    local = tmp_path / "italiano.csv"
    with local.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    uri = storage.upload_file(local, f"{s3_bucket}/user/italiano.csv")

    out = tmp_path / "it"
    assert _build(shared_data, out, "--langs", "it", "--max-problems", "12", "--probe-questions", "8",
                  "--user-data", uri, "--map", "question=domanda,english=originale,answer=cot,gold=risposta,lang==it") == 0
    printed = capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["trained_langs"] == ["en", "it"] and m["zero_shot_langs"] == []
    assert "it: not in mgsm, so not tested on it" in m["notes"] and "not in mgsm" in printed
    ex = read_examples(str(out), "train") + read_examples(str(out), "val")
    it = [e for e in ex if e["lang"] == "it"]
    assert sorted((e["task"], e["problem_id"]) for e in it if e["task"] == "cot")[:3] == [
        ("cot", "gsm8k-train-0"), ("cot", "gsm8k-train-1"), ("cot", "gsm8k-train-2")]
    natalia = next(e for e in it if e["problem_id"] == "gsm8k-train-0" and e["task"] == "cot")
    assert natalia["gold"] == 72 and natalia["response"].endswith("The answer is 72.")  # GSM8K's CoT, joined by text
    tr = next(e for e in it if e["problem_id"] == "gsm8k-train-0" and e["task"] == "translate")
    assert tr["instruction"].startswith("Translate the following sentences from Italian to English.")
    own = [e for e in it if e["gold"] == 7]  # its own answer + gold, its own problem
    assert {e["task"] for e in own} == {"cot", "translate"}
    # the empty row is quarantined and counted, not dropped
    assert m["validation"]["user"]["by_reason"] == {"missing_field": 1}
    # probe: the problems in every language (the user's four), parallel; --max-problems kept them first
    probe = read_records(str(out / "probe.jsonl"))
    it_probe = sorted({r.problem_id for r in probe if r.lang == "it"})
    assert it_probe[:3] == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"] and len(it_probe) == 4
    assert it_probe == sorted({r.problem_id for r in probe if r.lang == "en"})
    assert m["probe"]["langs"] == ["en", "it"] and m["sources"][uri]


def test_user_data_without_a_mapping_and_bad_probe_requests_are_clear(shared_data, tmp_path, capsys):
    assert _build(shared_data, tmp_path / "a", "--langs", "de", "--user-data", str(tmp_path / "f.csv")) == 2
    assert "--user-data needs --map" in capsys.readouterr().err
    from slam.data.real import build_real

    with pytest.raises(SlamError, match="over half of MGSM"):
        build_real(str(shared_data), str(tmp_path / "b"), langs=["th"], probe_questions=200, max_problems=5)


@pytest.mark.parametrize("ext", ["jsonl", "parquet"])
def test_an_english_column_yields_the_english_side_of_each_problem(tmp_path, ext):
    from slam.data.loaders import raw_generic

    rows = [{"q": "Tom hat 3 Äpfel.", "en": "Tom has 3 apples.", "id": "p1"},
            {"q": "Anna hat 2 Birnen.", "en": "", "id": "p2"}]
    path = tmp_path / f"f.{ext}"
    if ext == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    out = raw_generic(str(path), {"question": "q", "english": "en", "problem_id": "id", "lang": "=de"})
    assert [(r["problem_id"], r["lang"], r["question"]) for r in out] == [
        ("p1", "de", "Tom hat 3 Äpfel."), ("p1", "en", "Tom has 3 apples."), ("p2", "de", "Anna hat 2 Birnen.")]
    assert "english" not in out[0]
