"""The parts of the peer benches (bench/vs_lm_eval.py) that run without the peer's virtualenv: the local
lm-eval task they generate and how they compare completions. The benches themselves need PyPI and a few
GB (README "Performance"); these keep their slam-side contract from rotting in the default suite.

    .venv/bin/python -m pytest -q tests/test_peer_benches.py
"""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def vs_lm_eval():
    spec = importlib.util.spec_from_file_location("vs_lm_eval", BENCH / "vs_lm_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_lm_eval_task_uses_slams_prompt_stop_strings_and_budget(vs_lm_eval, tmp_path):
    from slam.generation import STOP_STRINGS

    data = tmp_path / "mgsm"
    data.mkdir()
    for lang in ("en", "de"):
        (data / f"mgsm_{lang}.tsv").write_text("Janet has 3 apples. How many?\t3\n")
    names = vs_lm_eval.write_tasks(tmp_path / "tasks", data, ["en", "de"], 48)
    assert names == ["slam_mgsm_en", "slam_mgsm_de"]
    yaml = (tmp_path / "tasks" / "slam_mgsm_de.yaml").read_text()
    assert f"until: {json.dumps(list(STOP_STRINGS['alpaca']))}" in yaml
    assert "max_gen_toks: 48" in yaml and "do_sample: false" in yaml
    assert json.dumps(str((data / "mgsm_de.tsv").resolve())) in yaml
    assert (tmp_path / "tasks" / "utils.py").is_file()  # the helper whose ALPACA write_tasks checked


def test_a_missing_language_file_stops_the_bench_with_its_path(vs_lm_eval, tmp_path):
    with pytest.raises(SystemExit, match="mgsm_sw.tsv"):
        vs_lm_eval.write_tasks(tmp_path / "tasks", tmp_path, ["sw"], 16)


def test_agreement_counts_completions_and_answers_separately(vs_lm_eval):
    def row(completion, answer, acc):
        return {"completion": completion, "answer": answer, "acc": acc}

    lm = {("en", "q1"): row("The answer is 8. ", "8", 1), ("de", "q2"): row("Es kostet 16,50", "16,50", 0),
          ("en", "q3"): row("7", "7", 0)}
    sl = {("en", "q1"): row("The answer is 8.", 8.0, 1), ("de", "q2"): row("Es kostet 16,50", 50.0, 0),
          ("en", "q4"): row("9", 9.0, 0)}
    a = vs_lm_eval.agreement(lm, sl)
    assert (a["questions"], a["matched"], a["same_completion"], a["same_answer"]) == (4, 2, 2, 1)
    assert [d["question"] for d in a["diffs"]] == ["q2"]
