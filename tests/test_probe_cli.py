"""`slam probe` end to end on a tiny saved model: outputs (local and S3), the hand-off to `slam plan`,
clear errors; plus the real SmolLM2-on-MGSM run (slow).

    .venv/bin/python -m pytest -q tests/test_probe_cli.py            # add -m slow for the real run
"""

import json
from pathlib import Path

import pytest

from slam import storage
from slam.cli import main
from slam.data.records import Record, to_jsonl

LANGS = ["en", "de", "ru"]
QUESTIONS = {
    "en": ["Tom has 3 apples and buys 5 more. How many now?", "A cat sat on 2 red mats.",
           "She reads 12 pages a day for 4 days."],
    "de": ["Tom hat 3 Äpfel und kauft 5 mehr. Wie viele jetzt?", "Eine Katze saß auf 2 roten Matten.",
           "Sie liest 12 Seiten am Tag, 4 Tage lang."],
    "ru": ["У Тома 3 яблока, он покупает ещё 5. Сколько теперь?", "Кошка сидела на 2 красных ковриках.",
           "Она читает 12 страниц в день 4 дня."],
}


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory) -> Path:
    recs = [Record(id=f"p{i}-{lang}", problem_id=f"p{i}", lang=lang, question=q, answer=None, gold=None,
                   source="test")
            for lang in LANGS for i, q in enumerate(QUESTIONS[lang])]
    path = tmp_path_factory.mktemp("data") / "probe.jsonl"
    path.write_text(to_jsonl(recs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from slam.testing import save_tiny

    texts = [q for qs in QUESTIONS.values() for q in qs] * 4
    return save_tiny(tmp_path_factory.mktemp("m") / "llama", "llama", num_layers=4, texts=texts)


def _probe(model_dir, data, out, *extra) -> int:
    return main(["probe", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--no-progress",
                 "--top-k", "2", *extra])


@pytest.mark.parametrize("method,selection", [("msd", "top-k"), ("lape", "contiguous"), ("cosine", "top-k")])
def test_cli_writes_outputs_and_feeds_plan(method, selection, model_dir, probe_data, tmp_path, capsys):
    out = tmp_path / "probe"
    assert _probe(model_dir, probe_data, out, "--method", method, "--selection", selection,
                  "--langs", "en,de,ru") == 0
    for name in ("probe.json", "heatmap.png", "scores.png", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "probe.json").read_text())
    assert report["method"] == method and report["selection"] == selection and report["langs"] == LANGS
    assert len(report["selected_layers"]) == 2 and report["num_layers"] == 4
    if selection == "contiguous":
        assert report["selected_layers"][1] == report["selected_layers"][0] + 1
    md = (out / "summary.md").read_text()
    assert f"`{','.join(map(str, report['selected_layers']))}`" in md and "| 3 |" in md
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["plan", "--model", str(model_dir), "--probe", str(out / "probe.json"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["layers"] == report["selected_layers"]


def test_cli_same_input_same_probe_json(model_dir, probe_data, tmp_path):
    for name in ("a", "b"):
        assert _probe(model_dir, probe_data, tmp_path / name) == 0
    assert (tmp_path / "a" / "probe.json").read_bytes() == (tmp_path / "b" / "probe.json").read_bytes()


def test_cli_reads_and_writes_s3(model_dir, probe_data, s3_bucket):
    storage.upload_file(probe_data, f"{s3_bucket}/in/probe.jsonl")
    out = f"{s3_bucket}/runs/probe"
    assert _probe(model_dir, f"{s3_bucket}/in/probe.jsonl", out) == 0
    report = storage.read_json(f"{out}/probe.json")
    assert report["langs"] == LANGS
    assert storage.exists(f"{out}/_SUCCESS") and storage.exists(f"{out}/heatmap.png")


@pytest.mark.parametrize("extra,match", [
    (["--langs", "en,fr"], "no probe questions for language(s) fr"),
    (["--method", "cosine", "--langs", "de,ru"], "add 'en'"),
    (["--top-k", "7"], "top_k must be in 1..4"),
])
def test_cli_bad_input_exits_2_with_one_line(extra, match, model_dir, probe_data, tmp_path, capsys):
    assert _probe(model_dir, probe_data, tmp_path / "x", *extra) == 2
    err = capsys.readouterr().err
    assert err.count("slam: error:") == 1 and match in err and "Traceback" not in err
    assert "Loading weights" not in err  # rejected before the model is loaded
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_cli_missing_data_is_a_clear_error(model_dir, tmp_path, capsys):
    assert _probe(model_dir, tmp_path / "nope.jsonl", tmp_path / "x") == 2
    assert "nope.jsonl" in capsys.readouterr().err


@pytest.mark.slow
def test_real_smollm2_on_mgsm(smollm2_dir, shared_data, tmp_path):
    """SmolLM2-135M on 50 parallel MGSM questions x 10 languages: a plausible, finite, complete report."""
    out = tmp_path / "probe"
    langs = "en,de,es,fr,ja,ru,sw,th,zh,bn"
    assert main(["probe", "--model", str(smollm2_dir), "--data", str(shared_data / "mgsm"), "--langs", langs,
                 "--max-questions", "50", "--out", str(out), "--no-progress"]) == 0
    r = json.loads((out / "probe.json").read_text())
    assert r["num_layers"] == 30 and r["stats"]["questions"] == 50 and r["langs"] == langs.split(",")
    assert len(r["selected_layers"]) == 6 and sorted(r["ranking"]) == list(range(30))
    assert max(r["scores"]) > 0
