"""Bad-input catalogue: every malformed file gives a quarantine entry with the right reason, or one clear error line.

Run: .venv/bin/python -m pytest -q tests/test_data_validate.py
"""

import json

import pytest

from slam.cli import main
from slam.data.validate import encoding_problem, parse_gold

GOOD = {"id": "p1-de", "problem_id": "p1", "lang": "de", "question": "Anna hat 3 Äpfel. Wie viele?",
        "answer": "3. The answer is 3.", "gold": 3, "source": "t"}


def rec(**kw):
    return json.dumps({**GOOD, "id": f"{kw.get('problem_id', 'p2')}-x", "problem_id": "p2", **kw},
                      ensure_ascii=False).encode()


def lines(*rows: bytes) -> bytes:
    return b"\n".join([json.dumps(GOOD, ensure_ascii=False).encode(), *rows]) + b"\n"


GSM_OK = json.dumps({"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"})

# (case, file name, content, extra CLI args, expected quarantine reasons)
QUARANTINE_CASES = [
    ("missing question", "r.jsonl", lines(json.dumps({k: v for k, v in GOOD.items() if k != "question"} |
                                                     {"problem_id": "p2"}).encode()), [], ["missing_field"]),
    ("empty question", "r.jsonl", lines(rec(question="   ")), [], ["missing_field"]),
    ("non-numeric gold", "r.jsonl", lines(rec(gold="three")), [], ["bad_gold"]),
    ("NaN gold", "r.jsonl", lines(rec(gold="NaN")), [], ["bad_gold"]),
    ("unknown language code", "r.jsonl", lines(rec(lang="xx")), [], ["unknown_lang"]),
    ("Latin text labelled zh", "r.jsonl", lines(rec(lang="zh", question="Tom has 3 apples.")), [], ["script_mismatch"]),
    ("Latin text labelled ru", "r.jsonl", lines(rec(lang="ru", question="Tom has 3 apples.")), [], ["script_mismatch"]),
    ("Thai text labelled de", "r.jsonl", lines(rec(question="ทอมมีแอปเปิล 3 ลูก")), [], ["script_mismatch"]),
    ("duplicate problem+language", "r.jsonl", lines(rec(problem_id="p1", question="Anders: 4 Äpfel.")), [],
     ["duplicate"]),
    ("duplicate question text", "r.jsonl", lines(rec(question=GOOD["question"])), [], ["duplicate"]),
    ("over-long example", "r.jsonl", lines(rec(question="Anna hat Äpfel. " * 500)), [], ["too_long"]),
    ("invalid UTF-8 bytes", "r.jsonl", lines(b'{"id": "x", "question": "caf\xe9"}'), [], ["encoding"]),
    ("mojibake", "r.jsonl", lines(rec(question="Anna hat 3 Ã„pfel.")), [], ["encoding"]),
    ("replacement characters", "r.jsonl", lines(rec(question="Anna hat 3 \ufffd\ufffdpfel.")), [], ["encoding"]),
    ("control characters", "r.jsonl", lines(rec(question="Anna hat\x00 3 Äpfel.")), [], ["encoding"]),
    ("invalid JSON line", "r.jsonl", lines(b'{"id": "p2", "question": '), [], ["parse_error"]),
    ("JSON line not an object", "r.jsonl", lines(b'[1, 2, 3]'), [], ["parse_error"]),
    ("MGSM TSV line without a tab", "mgsm_de.tsv", "Anna hat 3 Äpfel.\t3\nKein Tab hier 4\n".encode(), [],
     ["parse_error"]),
    ("MGSM TSV line with 3 fields", "mgsm_de.tsv", "Anna hat 3 Äpfel.\t3\nA\tb\t4\n".encode(), [], ["parse_error"]),
    ("MGSM TSV non-numeric answer", "mgsm_de.tsv", "Anna hat 3 Äpfel.\t3\nAnna hat 4 Birnen.\tvier\n".encode(), [],
     ["bad_gold"]),
    ("GSM8K answer without ####", "train.jsonl",
     (GSM_OK + "\n" + json.dumps({"question": "Q2 has 4 pears?", "answer": "4 pears\n"})).encode() + b"\n",
     ["--format", "gsm8k"], ["parse_error"]),
    ("GSM8K missing answer", "train.jsonl",
     (GSM_OK + "\n" + json.dumps({"question": "Q2 has 4 pears?"})).encode() + b"\n", ["--format", "gsm8k"],
     ["missing_field"]),
    ("CSV with empty gold", "x.csv", "q,a\nAnna hat 3 Äpfel.,3\nAnna hat 4 Äpfel.,\n".encode(),
     ["--map", "question=q,gold=a,lang==de"], ["missing_field"]),
]


@pytest.mark.parametrize("case,name,content,extra,reasons", QUARANTINE_CASES, ids=[c[0] for c in QUARANTINE_CASES])
def test_bad_rows_are_quarantined_with_a_reason(case, name, content, extra, reasons, tmp_path, capsys):
    f = tmp_path / name
    f.write_bytes(content)
    q = tmp_path / "q.jsonl"
    assert main(["data", "validate", str(f), "--quarantine", str(q), *extra]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(x) for x in q.read_text().splitlines()]
    assert [r["reason"] for r in rows] == reasons
    assert all(r["detail"] and r["where"] for r in rows)
    assert "read 2 = kept 1 + quarantined 1" in out  # counts reconcile


ERROR_CASES = [
    ("empty file", "r.jsonl", b"\n\n", [], "no rows to read"),
    ("all rows bad", "r.jsonl", rec(gold="x") + b"\n" + rec(problem_id="p3", lang="xx") + b"\n", [],
     "all 2 rows rejected"),
    ("requested language ends up empty", "r.jsonl", lines(rec(lang="zh", question="Latin only")), ["--langs", "de,zh"],
     "language(s) zh ended up with no valid rows"),
    ("file not found", "missing.jsonl", None, [], "file not found"),
    ("generic CSV without a mapping", "x.csv", b"q,a\nx,1\n", [], "needs --map"),
    ("mapping names a missing column", "x.csv", b"q,a\nx,1\n", ["--map", "question=question,lang==de"],
     "column(s) question not found"),
    ("unknown file type", "data.xlsx", b"PK..", [], "cannot guess the format"),
    ("TSV of unknown language", "questions.tsv", b"a\t1\n", ["--format", "mgsm"], "pass --lang"),
]


@pytest.mark.parametrize("case,name,content,extra,message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_unusable_files_fail_with_one_clear_line(case, name, content, extra, message, tmp_path, capsys):
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    assert main(["data", "validate", str(f), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("slam: error:")
    assert message in err


@pytest.mark.parametrize("value,expected", [(18, 18.0), ("18", 18.0), ("1,234", 1234.0), (" 7.5 ", 7.5),
                                            ("8.0", 8.0), ("-3", -3.0), ("abc", None), ("inf", None), (None, None),
                                            (True, None), ("", None)])
def test_parse_gold(value, expected):
    assert parse_gold(value) == expected


@pytest.mark.parametrize("text,bad", [("Äpfel und Größe", False), ("苹果和香蕉", False), ("Привет", False),
                                      ("Combien d’œufs", False), ("cafÃ©", True), ("ÐŸÑ€Ð¸Ð²ÐµÑ‚", True),
                                      ("x\ufffd", True), ("tab\tok\nnewline ok", False), ("bell\x07", True)])
def test_encoding_problems(text, bad):
    assert (encoding_problem(text) is not None) == bad


def test_qalign_files_that_are_not_line_aligned_are_an_error(tmp_path):
    from slam.data.loaders import load_qalign
    from slam.errors import SlamError

    d = tmp_path / "gsm8kinstruct_question" / "de-en"
    d.mkdir(parents=True)
    (d / "train.de").write_text("Eins\nZwei\nDrei\n")
    (d / "train.en").write_text("One\nTwo\n")
    with pytest.raises(SlamError, match="not line-aligned: 3 lines in train.de vs 2"):
        load_qalign(str(tmp_path), ["de"])
