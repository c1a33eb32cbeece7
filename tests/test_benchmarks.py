"""Benchmarks by URI: MGSM/MSVAMP from a local dir, an s3:// prefix, a build's test split, or `datasets`
(the hub when online; here a local `datasets`-loadable copy the test builds). Nothing depends on where
slam is installed.

    SLAM_SHARED_DATA=../shared/data .venv/bin/python -m pytest -q tests/test_benchmarks.py
"""

import json

import pytest

from slam import storage, tasks
from slam.errors import SlamError
from slam.tasks.sources import available_langs, benchmark_source, read_benchmark


def test_benchmark_source_forms(tmp_path):
    assert benchmark_source("mgsm", "s3://b/bench") == "s3://b/bench/mgsm"
    assert benchmark_source("msvamp", "/data/bench") == "/data/bench/msvamp"
    both = "mgsm=hf:juletxara/mgsm, msvamp=s3://b/msvamp"
    assert benchmark_source("mgsm", both) == "hf:juletxara/mgsm"
    assert benchmark_source("msvamp", both) == "s3://b/msvamp"
    assert benchmark_source("mgsm", "hf:juletxara/mgsm@main") == "hf:juletxara/mgsm@main"
    with pytest.raises(SlamError, match="names no source for msvamp"):
        benchmark_source("msvamp", "mgsm=/x")
    (tmp_path / "test_mgsm.jsonl").write_text("")
    assert benchmark_source("mgsm", "", data_uri=str(tmp_path)) == str(tmp_path / "test_mgsm.jsonl")
    with pytest.raises(SlamError, match="no msvamp questions: set benchmarks"):
        benchmark_source("msvamp", "", data_uri=str(tmp_path))


def test_the_evaluation_has_no_default_data_location():
    """A pod has no repository and no ../shared next to the code: nothing may guess one."""
    import inspect

    from slam import evaluate
    from slam.commands import data
    from slam.commands import evaluate as ev_cmd

    assert not hasattr(evaluate, "default_data_dir")
    for mod in (evaluate, ev_cmd, data, tasks, tasks.get("mgsm"), tasks.get("msvamp")):
        src = inspect.getsource(mod)
        assert "__file__" not in src and "SLAM_SHARED_DATA" not in src, mod.__name__


def test_mgsm_from_an_s3_prefix_reads_like_the_local_dir(shared_data, s3_bucket):
    for lang in ("en", "de"):
        storage.upload_file(shared_data / "mgsm" / f"mgsm_{lang}.tsv", f"{s3_bucket}/bench/mgsm/mgsm_{lang}.tsv")
    src = benchmark_source("mgsm", f"{s3_bucket}/bench")
    assert available_langs(tasks.get("mgsm"), src) == ["en", "de"]
    remote = tasks.get("mgsm").load(src, langs=["en", "de"], limit=5)
    local = tasks.get("mgsm").load(str(shared_data / "mgsm"), langs=["en", "de"], limit=5)
    assert remote == local and len(remote) == 10
    # the held-out probe problems are never evaluated on, from any source
    held = tasks.get("mgsm").load(src, langs=["en"], limit=3, exclude=["mgsm-0", "mgsm-2"])
    assert [r.problem_id for r in held] == ["mgsm-1", "mgsm-3", "mgsm-4"]


def _datasets_copy(shared_data, root, langs):
    """An MGSM copy in the hub's layout (per-language configs, a test split of parquet), as `datasets`
    loads it from the hub: columns question / answer / answer_number / equation_solution."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cards = []
    for lang in langs:
        lines = [x.split("\t") for x in (shared_data / "mgsm" / f"mgsm_{lang}.tsv").read_text().split("\n") if x]
        table = pa.table({"question": [q for q, _ in lines], "answer": [None] * len(lines),
                          "answer_number": [int(a.replace(",", "")) for _, a in lines], "equation_solution": [None] * len(lines)})
        (root / lang).mkdir(parents=True)
        pq.write_table(table, root / lang / "test-00000-of-00001.parquet")
        cards.append(f"- config_name: {lang}\n  data_files:\n  - split: test\n    path: {lang}/test-*\n")
    (root / "README.md").write_text("---\nconfigs:\n" + "".join(cards) + "---\n# MGSM (test copy)\n")
    return root


def test_mgsm_through_datasets_equals_the_native_files(shared_data, tmp_path):
    pytest.importorskip("datasets")
    copy = _datasets_copy(shared_data, tmp_path / "mgsm-hub", ["en", "zh"])
    mod = tasks.get("mgsm")
    via_datasets = mod.load(str(copy), langs=["en", "zh"], limit=4)
    native = mod.load(str(shared_data / "mgsm"), langs=["en", "zh"], limit=4)
    assert [(r.problem_id, r.lang, r.question, r.gold) for r in via_datasets] == \
        [(r.problem_id, r.lang, r.question, r.gold) for r in native]
    assert via_datasets[0].source == "mgsm"


def test_hf_benchmark_offline_is_one_line(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SlamError, match=r"cannot load juletxara/mgsm \(config 'de', split test\) with datasets") as e:
        read_benchmark(tasks.get("mgsm"), "hf:juletxara/mgsm", ["de"])
    assert "\n" not in str(e.value)


def test_eval_step_skips_held_out_probe_problems_and_marks_zero_shot(shared_data, tiny_model_dir, tmp_path):
    """The pipeline's evaluate step on a real build: MGSM from `benchmarks`, minus the problems the build
    held out for probing; th (no training data) is reported as zero-shot in eval.json/md."""
    from slam import steps
    from slam.data.real import build_real

    bench = tmp_path / "bench" / "mgsm"  # a 12-problem MGSM (the first rows of the real files)
    bench.mkdir(parents=True)
    for lang in ("en", "de", "th"):
        rows = (shared_data / "mgsm" / f"mgsm_{lang}.tsv").read_text(encoding="utf-8").split("\n")[:12]
        (bench / f"mgsm_{lang}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = tmp_path / "real"
    build_real(str(shared_data), str(data), langs=["de", "th"], max_problems=10, probe_questions=4,
               benchmarks=str(bench.parent))
    held = json.loads((data / "manifest.json").read_text())["probe"]["held_out"]["mgsm"]
    assert held == ["mgsm-8", "mgsm-9", "mgsm-10", "mgsm-11"]
    # the step reads the full 12-problem source and must drop the held-out problems itself
    out = steps.evaluate(storage=str(tmp_path / "st"), base_model=str(tiny_model_dir), data_uri=str(data),
                         tasks="mgsm", languages="en,de,th", limit=0, max_new_tokens=2,
                         benchmarks=str(bench.parent))
    report = json.loads(open(out["uri"]).read())
    assert {k: v["total"] for k, v in report["per_lang"].items()} == {"en": 8, "de": 8, "th": 8}
    assert not {s["id"].rsplit("-", 1)[0] for s in report["samples"]} & set(held)
    assert report["zero_shot"] == ["th"] and report["meta"]["excluded_for_probe"] == 4
    md = next((tmp_path / "st").rglob("eval.md")).read_text()
    assert "| th (zero-shot) |" in md and "Zero-shot (evaluated, not in the training data): th." in md
    assert "Zero-shot (not in the training data): th." in out["markdown"]
