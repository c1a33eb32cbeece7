"""Bad-input catalogue: every case runs the real CLI (`slam.cli.main`) and gets ONE error line, exit != 0,
no traceback — or, for bad data rows, a quarantine whose counts reconcile. Grouped by where the input
enters: config, data, URIs/storage, models, deltas, launcher, pipeline, registry.

    .venv/bin/python -m pytest -q tests/test_bad_input.py

A few cases also run `python -m slam` as a subprocess: what a user's terminal shows (stderr, logging
and warnings included) is one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from slam import storage
from slam.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()  # only what this command prints
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err: str, expected: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code not in (0, None), f"exit {code}: {err}"
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert "Traceback" not in err and lines[0].startswith("slam"), err
    assert expected in lines[0], f"{expected!r} not in {lines[0]!r}"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ------------------------------------------------------------------------------------------------ config

CONFIG_CASES = [
    ("lr NaN", "", ["train.lr=nan"], "train.lr: must be a finite number"),
    ("lr inf", "", ["train.lr=.inf"], "train.lr: must be a finite number"),
    ("negative epochs", "", ["train.epochs=-3"], "train.epochs: must be > 0"),
    ("negative cpus per worker", "", ["train.cpus_per_worker=-1"], "train.cpus_per_worker: must be > 0"),
    ("negative max_failures", "", ["train.max_failures=-2"], "train.max_failures: must be >= 0"),
    ("zero tune samples", "", ["tune.num_samples=0"], "tune.num_samples: must be > 0"),
    ("million-value k range", "", ["tune.k_grid=1-1000000"], "has 1000000 values (at most 1024)"),
    ("unknown language in data.langs", "", ["data.langs=en,xx"], "data.langs: unknown language code(s) 'xx'"),
    ("unknown language in probe.langs", "", ["probe.langs=de,klingon"], "probe.langs: unknown language code(s)"),
    ("NaN gate margin", "", ["tracking.gate_margin=nan"], "tracking.gate_margin: must be a finite"),
    ("negative gate margin", "", ["tracking.gate_margin=-1"], "tracking.gate_margin: must be >= 0"),
    ("NaN in lr grid", "", ["tune.lr_grid=[1e-4, .nan]"], "tune.lr_grid: must be a finite number"),
    ("negative lr in grid", "", ["tune.lr_grid=[-1e-4]"], "tune.lr_grid: learning rates must be > 0"),
    ("duplicate k", "", ["tune.k_grid=2,2,4"], "tune.k_grid: duplicate"),
    ("warmup ratio 1.5", "", ["train.warmup_ratio=1.5"], "train.warmup_ratio: must be in [0, 1)"),
    ("layer range backwards", "", ["train.layers=5-0"], "runs backwards"),
    ("an eval section", "", ["eval.limit=0"], "eval: evaluation is not set in this config: use `slam evaluate`"),
    ("unknown key", "", ["train.lrr=1"], "train.lrr: unknown key"),
    ("wrong type", "", ["train.micro_batch_size=two"], "expected an integer"),
    ("bad literal", "", ["train.engine=jax"], "'jax' is not one of"),
    ("not UTF-8", b"train:\n  run_name: caf\xe9\n", [], "not UTF-8 text"),
    ("invalid YAML", "train: [1, 2", [], "not valid YAML"),
    ("top level is a list", "- 1\n- 2\n", [], "expected a mapping of sections"),
    ("override into a non-section", "", ["train.lr.x=1"], "train.lr: expected a number"),
]


@pytest.mark.parametrize("case,content,overrides,expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config(case, content, overrides, expected, tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", content)
    code, _, err = run_cli(["train", "--config", str(cfg), *overrides], capsys)
    assert_one_error_line(code, err, expected)


def test_config_file_missing(tmp_path, capsys):
    code, _, err = run_cli(["train", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert_one_error_line(code, err, "config file not found")


# ------------------------------------------------------------------------------------------------- data

def _records(*rows: dict) -> str:
    base = {"answer": "Count them. The answer is 1.", "source": "t"}
    return "".join(json.dumps({**base, **r}, ensure_ascii=False) + "\n" for r in rows)


DATA_ERROR_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("synth unknown language", lambda t: ["data", "synth", "--out", str(t / "o"), "--langs", "en,xx"],
     "--langs: unknown language code(s) 'xx'"),
    ("synth duplicate language", lambda t: ["data", "synth", "--out", str(t / "o"), "--langs", "en,de,en"],
     "--langs: duplicate entries"),
    ("build val fraction 1.5", lambda t: ["data", "build", "--out", str(t / "o"), "--records", "x.jsonl",
                                           "--val-fraction", "1.5"], "val fraction must be in [0, 1)"),
    ("build val fraction NaN", lambda t: ["data", "build", "--out", str(t / "o"), "--records", "x.jsonl",
                                           "--val-fraction", "nan"], "val fraction must be in [0, 1)"),
    ("build translation ratio 2", lambda t: ["data", "build", "--out", str(t / "o"), "--records", "x.jsonl",
                                              "--translation-ratio", "2"], "translation ratio must be in [0, 1]"),
    ("synth --out is a file", lambda t: ["data", "synth", "--out", str(write(t / "f.txt", "x"))],
     "exists and is not a directory"),
    ("synth --out holds a foreign file", lambda t: ["data", "synth", "--out", str(write(t / "d" / "notes.txt",
                                                                                         "mine").parent)],
     "not empty and was not written by slam"),
    ("build records file missing", lambda t: ["data", "build", "--out", str(t / "o"), "--records",
                                               str(t / "missing.jsonl")], "file not found"),
    ("validate a directory", lambda t: ["data", "validate", str((t / "dir.jsonl").mkdir() or t / "dir.jsonl")],
     "is a directory"),
    ("validate corrupt Parquet", lambda t: ["data", "validate", str(write(t / "x.parquet", b"PAR1 not really")),
                                             "--map", "question=q,lang==de"], "not a readable Parquet file"),
    ("validate CSV header with an unclosed quote", lambda t: ["data", "validate", str(write(t / "x.csv",
                                                              '"q,a\nx,1\n')), "--map", "question=q,lang==de"],
     "header line is not valid CSV"),
    ("validate all rows ambiguous", lambda t: ["data", "validate", str(write(t / "x.csv", "q,a\nAnna hat 3.\t,5,600\n"
                                                                             .replace("\t", ""))),
                                                "--map", "question=q,gold=a,lang==de"], "all 1 rows rejected"),
]


@pytest.mark.parametrize("case,argv,expected", DATA_ERROR_CASES, ids=[c[0] for c in DATA_ERROR_CASES])
def test_data_errors(case, argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(argv(tmp_path), capsys)
    assert_one_error_line(code, err, expected)


GOOD_DE = {"problem_id": "p1", "lang": "de", "question": "Anna hat 3 Äpfel. Wie viele?", "gold": "3"}
# (case, file name, content, --map, expected quarantine reasons, read count, detail substring)
QUARANTINE_CASES = [
    ("unclosed quote does not fold the rows after it", "x.csv",
     'q,a\nAnna hat 3 Äpfel.,3\n"Anna hat 4 Äpfel.,4\nAnna hat 5 Äpfel.,5\nAnna hat 6 Äpfel.,6\n',
     "question=q,gold=a,lang==de", ["parse_error"], 4, "unclosed quote"),
    ("CSV field over the csv module's limit", "x.csv",
     "q,a\nAnna hat 3 Äpfel.,3\nAnna hat " + "x" * 140_000 + ",4\nAnna hat 5 Äpfel.,5\n",
     "question=q,gold=a,lang==de", ["parse_error"], 3, "longer than the csv module's limit"),
    ("CSV row with too many fields", "x.csv", "q,a\nAnna hat 3 Äpfel.,3\nAnna hat 4,5 Äpfel,4\n",
     "question=q,gold=a,lang==de", ["parse_error"], 2, "expected 2 fields, got 3"),
    ("ambiguous thousands/decimal in a de row", "x.csv", "q,a\nAnna hat 3 Äpfel.,3\nAnna hat viele Äpfel.,\"5,600\"\n",
     "question=q,gold=a,lang==de", ["bad_gold"], 2, "ambiguous number '5,600'"),
    ("gold not a number", "x.csv", "q,a\nAnna hat 3 Äpfel.,3\nAnna hat viele Äpfel.,drei\n",
     "question=q,gold=a,lang==de", ["bad_gold"], 2, "not a number"),
    ("de gold contradicts the English row", "r.jsonl",
     _records({"problem_id": "p1", "lang": "en", "question": "Anna has 3.5 apples?", "gold": "3.5"},
              {"problem_id": "p1", "lang": "de", "question": "Anna hat 3,5 Äpfel?", "gold": "35"},
              {"problem_id": "p2", "lang": "en", "question": "Tom has 2 pears?", "gold": 2},
              {"problem_id": "p2", "lang": "de", "question": "Tom hat 2 Birnen?", "gold": 2}),
     None, ["bad_gold"], 4, "differs from the English row's 3.5"),
    ("unknown language code", "r.jsonl", _records(GOOD_DE, {**GOOD_DE, "problem_id": "p2", "lang": "xx"}), None,
     ["unknown_lang"], 2, "unknown language code 'xx'"),
    ("mislabelled script", "r.jsonl",
     _records(GOOD_DE, {**GOOD_DE, "problem_id": "p2", "lang": "zh", "question": "Tom has 3 apples."}), None,
     ["script_mismatch"], 2, "labelled zh"),
    ("invalid JSON line", "r.jsonl", _records(GOOD_DE) + '{"problem_id": "p2", \n', None, ["parse_error"], 2,
     "not valid JSON"),
]


@pytest.mark.parametrize("case,name,content,mapping,reasons,read,detail", QUARANTINE_CASES,
                         ids=[c[0] for c in QUARANTINE_CASES])
def test_data_quarantine_counts_reconcile(case, name, content, mapping, reasons, read, detail, tmp_path, capsys):
    f = write(tmp_path / name, content)
    qdir = tmp_path / "quarantine"
    qdir.mkdir()  # --quarantine may name a directory: the file goes inside it
    argv = ["data", "validate", str(f), "--quarantine", str(qdir)] + (["--map", mapping] if mapping else [])
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (qdir / f"{name}.quarantine.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows] == reasons
    assert detail in rows[0]["detail"]
    kept = read - len(reasons)
    assert f"read {read} = kept {kept} + quarantined {len(reasons)}" in out


def test_decimal_comma_in_a_de_row_is_3_5_not_35(tmp_path, capsys):
    recs = _records({"problem_id": "p1", "lang": "en", "question": "Anna has 3.5 apples?", "gold": "3.5"},
                    {"problem_id": "p1", "lang": "de", "question": "Anna hat 3,5 Äpfel?", "gold": "3,5"},
                    {"problem_id": "p2", "lang": "de", "question": "Tom hat 1.234,5 Birnen?", "gold": "1.234,5"},
                    {"problem_id": "p3", "lang": "fr", "question": "Paul a 2,25 euros ?", "gold": "2,25"})
    f = write(tmp_path / "r.jsonl", recs)
    code, out, err = run_cli(["data", "build", "--records", str(f), "--out", str(tmp_path / "ds"),
                              "--val-fraction", "0"], capsys)
    assert code == 0, err
    golds = {(e["problem_id"], e["lang"]): e["gold"] for e in storage.read_jsonl(tmp_path / "ds" / "train.jsonl")
             if e["task"] == "cot"}
    assert golds[("p1", "de")] == golds[("p1", "en")] == 3.5
    assert golds[("p2", "de")] == 1234.5 and golds[("p3", "fr")] == 2.25


def test_rows_skipped_by_langs_are_counted(tmp_path, capsys):
    rows = [{"problem_id": f"p{i}", "lang": lang, "question": q, "gold": i, "answer": "x. The answer is 1."}
            for i in range(3) for lang, q in [("en", f"Tom has {i} apples?"), ("de", f"Tom hat {i} Äpfel?"),
                                               ("fr", f"Tom a {i} pommes ?")]]
    f = write(tmp_path / "r.jsonl", _records(*rows))
    code, out, err = run_cli(["data", "build", "--records", str(f), "--out", str(tmp_path / "ds"), "--langs", "de",
                              "--val-fraction", "0"], capsys)
    assert code == 0, err
    assert "skipped (valid rows of languages not in --langs): 3 (fr 3)" in out
    v = json.loads((tmp_path / "ds" / "manifest.json").read_text())["validation"]
    assert v["read"] == v["kept"] + v["quarantined"] == 9
    assert v["skipped_by_langs"] == {"fr": 3} and v["kept"] - sum(v["skipped_by_langs"].values()) == 6


# --------------------------------------------------------------------------------------------- URIs / S3

def test_s3_uri_without_bucket(capsys):
    code, _, err = run_cli(["data", "validate", "s3:///x.jsonl"], capsys)
    assert_one_error_line(code, err, "bad S3 URI")


def test_s3_missing_bucket(s3_server, capsys):
    code, _, err = run_cli(["data", "validate", "s3://no-such-bucket-here/x.jsonl"], capsys)
    assert_one_error_line(code, err, "S3 NoSuchBucket for s3://no-such-bucket-here/x.jsonl: create the bucket first")


def test_s3_endpoint_unreachable(monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    storage.reset_client()
    try:
        code, _, err = run_cli(["data", "validate", "s3://b/x.jsonl"], capsys)
    finally:
        storage.reset_client()
    assert_one_error_line(code, err, "S3 endpoint http://127.0.0.1:9 unreachable")


def test_s3_without_credentials(s3_server, monkeypatch, tmp_path, capsys):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage.reset_client()
    try:
        code, _, err = run_cli(["data", "validate", "s3://b/x.jsonl"], capsys)
    finally:
        storage.reset_client()
    assert_one_error_line(code, err, "no S3 credentials for s3://b/x.jsonl")


def test_s3_key_with_dot_dot_cannot_write_outside_the_target(s3_bucket, tmp_path, capsys):
    bucket = s3_bucket[len("s3://"):]
    c = storage.s3_client()
    c.put_object(Bucket=bucket, Key="data/probe.jsonl", Body=b"{}")
    c.put_object(Bucket=bucket, Key="data/../../../../tmp/slam-escape-test", Body=b"pwned")
    before = Path("/tmp/slam-escape-test").exists()
    code, _, err = run_cli(["probe", "--model", "pypi:smollm2", "--data", f"{s3_bucket}/data", "--out",
                            str(tmp_path / "out")], capsys)
    assert_one_error_line(code, err, "could write outside the target directory")
    assert Path("/tmp/slam-escape-test").exists() == before


def test_a_manifest_listing_dot_dot_is_refused(s3_bucket, tmp_path):
    from slam.errors import SlamError

    storage.write_json(f"{s3_bucket}/d/_SUCCESS", {"format": storage.MARKER_FORMAT, "id": "x",
                                                   "files": {"../../escape": {"sha256": "0" * 64, "size": 1}}})
    with pytest.raises(SlamError, match="could write outside"):
        storage.download_dir(f"{s3_bucket}/d", tmp_path / "out")


# ------------------------------------------------------------------------------------------------ models

MODEL_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("model dir missing", lambda t: ["plan", "--model", str(t / "nope"), "--layers", "0"], "nope"),
    ("model config.json not JSON", lambda t: ["plan", "--model", str(write(t / "m" / "config.json", "{oops").parent),
                                               "--layers", "0"], "config.json"),
    ("unknown pypi model", lambda t: ["plan", "--model", "pypi:gpt-17", "--layers", "0"], "gpt-17"),
    ("layer range too long", lambda t: ["plan", "--model", str(REPO / "configs/models/llama-2-7b"),
                                        "--layers", "0-5000"], "at most 1024"),
    ("layer beyond the model", lambda t: ["plan", "--model", str(REPO / "configs/models/llama-2-7b"),
                                          "--layers", "40"], "40"),
    ("probe.json not JSON", lambda t: ["plan", "--model", str(REPO / "configs/models/llama-2-7b"), "--probe",
                                       str(write(t / "p.json", "{"))], "not valid JSON"),
    ("probe.json without selected layers", lambda t: ["plan", "--model", str(REPO / "configs/models/llama-2-7b"),
                                                      "--probe", str(write(t / "p.json", '{"scores": [1, 2]}'))],
     "'selected_layers' must be a non-empty list"),
    ("probe.json with text scores", lambda t: ["plan", "--model", str(REPO / "configs/models/llama-2-7b"), "--probe",
                                               str(write(t / "p.json", '{"scores": "high", "selected_layers": [0]}'))],
     "not a valid probe report"),
    ("probe.json layer out of range", lambda t: ["plan", "--model", str(REPO / "configs/models/llama-2-7b"),
                                                 "--probe", str(write(t / "p.json",
                                                                      '{"scores": [1, 2], "selected_layers": [7]}'))],
     "within 'scores'"),
]


@pytest.mark.parametrize("case,argv,expected", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_models(case, argv, expected, tmp_path, capsys):
    code, _, err = run_cli(argv(tmp_path), capsys)
    assert_one_error_line(code, err, expected)


# ------------------------------------------------------------------------------------------------ deltas

@pytest.fixture(scope="module")
def tiny_delta(tmp_path_factory, tiny_model_dir) -> Path:
    """A real published delta (slam.delta.save_delta) of the tiny model, layers 0-1."""
    from slam import delta
    from slam.freeze import make_plan
    from slam.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    out = tmp_path_factory.mktemp("delta") / "delta"
    delta.save_delta(model, make_plan(model, [0, 1], ["up", "down"]), out, {"base_path": str(tiny_model_dir)})
    return out


def _copy_delta(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _tamper_tensors(d: Path) -> Path:
    (d / "delta.safetensors").write_bytes(b"\0" * 64)
    return d


def _republish_corrupt(d: Path) -> Path:
    _tamper_tensors(d)
    storage.write_json(d / storage.SUCCESS, storage.marker_for(storage.file_manifest(d)))
    return d


DELTA_CASES: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("delta dir missing", lambda t, d: t / "none", "not a SLAM delta dir"),
    ("manifest of another format", lambda t, d: write(t / "x" / "manifest.json", '{"format": "lora"}').parent,
     "manifest format 'lora'"),
    ("manifest not JSON", lambda t, d: write(t / "x" / "manifest.json", "{").parent, "not valid JSON"),
    ("manifest without tensor list", lambda t, d: write(t / "x" / "manifest.json", '{"format": "slam-delta/1"}').parent,
     "malformed manifest.json"),
    ("tensors changed after publishing", lambda t, d: _tamper_tensors(_copy_delta(d, t / "x")),
     "does not match its _SUCCESS manifest"),
    ("corrupt safetensors", lambda t, d: _republish_corrupt(_copy_delta(d, t / "x")), "not a readable safetensors"),
]


@pytest.mark.parametrize("case,make,expected", DELTA_CASES, ids=[c[0] for c in DELTA_CASES])
def test_deltas(case, make, expected, tmp_path, tiny_delta, tiny_model_dir, capsys):
    from slam.delta import FORMAT

    assert FORMAT == "slam-delta/1"
    d = make(tmp_path, tiny_delta)
    code, _, err = run_cli(["merge", "--base", str(tiny_model_dir), "--delta", str(d), "--out",
                            str(tmp_path / "merged")], capsys)
    assert_one_error_line(code, err, expected)


def test_delta_on_the_wrong_base(tmp_path, tiny_delta, capsys):
    from slam.testing import save_tiny

    other = save_tiny(tmp_path / "other", "llama", num_layers=4, seed=7)
    code, _, err = run_cli(["merge", "--base", str(other), "--delta", str(tiny_delta), "--out", str(tmp_path / "m")],
                           capsys)
    assert_one_error_line(code, err, "wrong base model")


def test_merge_out_holding_foreign_files_is_refused_before_any_work(tmp_path, tiny_delta, tiny_model_dir, capsys):
    out = write(tmp_path / "merged" / "README.txt", "my notes").parent
    code, _, err = run_cli(["merge", "--base", str(tiny_model_dir), "--delta", str(tiny_delta), "--out", str(out)],
                           capsys)
    assert_one_error_line(code, err, "not empty and was not written by slam")
    assert (out / "README.txt").read_text() == "my notes" and sorted(p.name for p in out.iterdir()) == ["README.txt"]


# ---------------------------------------------------------------------------------------------- launcher

RAYJOB = ["launch", "rayjob", "--print", "--storage", "s3://bucket/run", "--run-id", "r1", "--step", "train"]
LAUNCHER_CASES = [
    ("namespace with a space", [*RAYJOB, "--namespace", "Bad NS"], "must be a DNS-1123 label"),
    ("namespace uppercase", [*RAYJOB, "--namespace", "Slam"], "must be a DNS-1123 label"),
    ("node selector without key", [*RAYJOB, "--node-selector", "=gpu"], "expected key=value"),
    ("node selector value with space", [*RAYJOB, "--node-selector", "pool=gpu pool"], "the value must be empty"),
    ("node selector key with slash only", [*RAYJOB, "--node-selector", "/x=1"], "must be [prefix/]name"),
    ("cpus in words", [*RAYJOB, "--cpus-per-worker", "four cores"], "is not a Kubernetes quantity"),
    ("negative memory", [*RAYJOB, "--memory-per-worker=-16Gi"], "is not a Kubernetes quantity"),
    ("zero shm", [*RAYJOB, "--shm-size", "0"], "must be > 0"),
    ("negative deadline", [*RAYJOB, "--active-deadline=-5"], "must be a positive finite number"),
    ("NaN timeout", [*RAYJOB, "--timeout", "nan"], "must be a positive finite number"),
    ("zero poll", [*RAYJOB, "--poll", "0"], "must be a positive finite number"),
    ("toleration with bad effect", [*RAYJOB, "--toleration", "gpu:Sometimes"], "expected key[=value]:NoSchedule"),
    ("toleration key with space", [*RAYJOB, "--toleration", "bad key:NoSchedule"], "must be [prefix/]name"),
    ("env value with a URL password", [*RAYJOB, "--env", "MLFLOW_TRACKING_URI=http://u:hunter22@mlflow:5000"],
     "carries a user:password@ part"),
    ("env value with an AWS key", [*RAYJOB, "--env", "X=AKIA" "ABCDEFGHIJKLMNOP"], "carries an AWS access key id"),
    ("env value key=secret", [*RAYJOB, "--env", "OPTS=password=hunter22"], "carries a key=value credential"),
    ("env credential by name", [*RAYJOB, "--env", "AWS_SECRET_ACCESS_KEY=x", "--", "slam", "train"],
     "look like credentials"),
    ("no step command", [*RAYJOB], "no step command"),
    ("not a slam command", [*RAYJOB, "--", "bash", "-c", "id"], "must be `slam <step>"),
    ("zero workers", [*RAYJOB, "--workers", "0", "--", "slam", "train"], "num_workers must be >= 1"),
    ("submit without ids", ["launch", "submit", "--address", "http://127.0.0.1:9", "--storage", "s3://bucket/run", "--", "slam", "train"],
     "give --submission-id, or --run-id and --step"),
    ("submit env with a password", ["launch", "submit", "--address", "http://127.0.0.1:9", "--storage", "s3://bucket/run", "--env",
                                    "DSN=postgresql://u:pw123456@db/x", "--", "slam", "train"],
     "carries a user:password@ part"),
]


@pytest.mark.parametrize("case,argv,expected", LAUNCHER_CASES, ids=[c[0] for c in LAUNCHER_CASES])
def test_launcher(case, argv, expected, capsys):
    code, _, err = run_cli(argv, capsys)
    assert_one_error_line(code, err, expected)
    assert "hunter22" not in err and "AKIA" "ABCDEFGHIJKLMNOP" not in err, "credentials echoed back"


# ---------------------------------------------------------------------------------------------- pipeline

HOST = ["--host", "http://127.0.0.1:9"]  # nothing listens: any case that reached the host would say so
SUBMIT = ["pipeline", "submit", *HOST]
SCHEDULE = ["pipeline", "schedule", *HOST]
PIPELINE_CASES = [
    ("unknown language", [*SUBMIT, "languages=en,xx"], "parameter languages: unknown language code(s) 'xx'"),
    ("duplicate language", [*SUBMIT, "languages=en,de,en"], "duplicate entries"),
    ("no language", [*SUBMIT, "languages=,"], "give at least one language code"),
    ("zero synthetic problems", [*SUBMIT, "synth_problems=0"], "synth_problems: must be >= 1"),
    ("negative eval limit", [*SUBMIT, "eval_limit=-1"], "eval_limit: must be >= 0"),
    ("size not an integer", [*SUBMIT, "probe_top_k=six"], "expected an integer"),
    ("million-value k grid", [*SUBMIT, "k_grid=1-1000000"], "(at most 1024)"),
    ("unknown probe method", [*SUBMIT, "probe_method=magic"], "probe_method: 'magic' is not one of"),
    ("unknown launcher", [*SUBMIT, "launcher=ssh"], "launcher: 'ssh' is not one of"),
    ("unknown eval task", [*SUBMIT, "eval_tasks=gsm8k"], "unknown task(s) gsm8k"),
    ("bad train override", [*SUBMIT, "train_overrides=train.lr=nan"], "train.lr: must be a finite number"),
    ("credentials in a parameter", [*SUBMIT, "mlflow_uri=http://admin:hunter22@mlflow:5000"],
     "parameter mlflow_uri carries a user:password@ part"),
    ("unknown parameter", [*SUBMIT, "langauges=de"], "unknown pipeline parameter 'langauges'"),
    ("token on the command line", [*SUBMIT, "--token", "hunter22-secret-token"], "visible to other users"),
    ("namespace with a space", [*SUBMIT, "--namespace", "Bad NS"], "must be a DNS-1123 label"),
    ("node selector without key", [*SUBMIT, "--node-selector", "=gpu"], "expected key=value"),
    ("toleration key with a space", [*SUBMIT, "--toleration", "a b"], "must be [prefix/]name"),
    ("five-field cron", [*SCHEDULE, "--cron", "0 3 * * 1"], "did you mean '0 0 3 * * 1'"),
    ("hour 25", [*SCHEDULE, "--cron", "0 0 25 * * 1"], "invalid hours='25'"),
    ("minute 61", [*SCHEDULE, "--cron", "0 61 * * * *"], "invalid minutes='61'"),
    ("day-of-week 9", [*SCHEDULE, "--cron", "0 0 3 * * 9"], "invalid day-of-week='9'"),
    ("step zero", [*SCHEDULE, "--cron", "*/0 * * * * *"], "invalid seconds"),
    ("unknown descriptor", [*SCHEDULE, "--cron", "@fortnightly"], "unknown descriptor"),
    ("concurrency 0", [*SCHEDULE, "--cron", "0 0 3 * * 1", "--max-concurrency", "0"], "--max-concurrency must be in 1..10"),
    ("concurrency 11", [*SCHEDULE, "--cron", "0 0 3 * * 1", "--max-concurrency", "11"], "must be in 1..10"),
]


@pytest.mark.parametrize("case,argv,expected", PIPELINE_CASES, ids=[c[0] for c in PIPELINE_CASES])
def test_pipeline_is_checked_before_contacting_kfp(case, argv, expected, capsys):
    pytest.importorskip("kfp")
    code, _, err = run_cli(argv, capsys)
    assert_one_error_line(code, err, expected)
    assert "cannot reach KFP" not in err, "checked after contacting the host"
    assert "hunter22" not in err


def test_unreachable_kfp_host_is_one_line(capsys):
    pytest.importorskip("kfp")
    code, _, err = run_cli(["pipeline", "schedules", *HOST], capsys)
    assert_one_error_line(code, err, "cannot reach KFP at http://127.0.0.1:9")


# ---------------------------------------------------------------------------------------------- registry

def _eval_json(t: Path, per_lang: object, **extra) -> Path:
    return write(t / "eval.json", json.dumps({"per_lang": per_lang, **extra}))


REGISTRY_CASES: list[tuple[str, Callable[[Path], Path], list[str], str]] = [
    ("accuracy is text", lambda t: _eval_json(t, {"de": {"accuracy": "high"}}), [], "malformed accuracy for de"),
    ("accuracy over 1", lambda t: _eval_json(t, {"de": {"accuracy": 150}}), [], "malformed accuracy for de"),
    ("accuracy NaN", lambda t: write(t / "eval.json", '{"per_lang": {"de": {"accuracy": NaN}}}'), [],
     "malformed accuracy for de"),
    ("average malformed", lambda t: _eval_json(t, {"de": {"accuracy": 0.5}}, average_non_en="x"), [],
     "malformed accuracy for average_non_en"),
    ("no per-language block", lambda t: write(t / "eval.json", "[1, 2]"), [], "has no per_lang accuracies"),
    ("eval.json not JSON", lambda t: write(t / "eval.json", "{"), [], "not valid JSON"),
    ("eval.json missing", lambda t: t / "none.json", [], "file not found"),
    ("NaN gate margin", lambda t: _eval_json(t, {"de": {"accuracy": 0.5}}), ["tracking.gate_margin=nan"],
     "tracking.gate_margin: must be a finite number"),
]


@pytest.mark.parametrize("case,make,extra,expected", REGISTRY_CASES, ids=[c[0] for c in REGISTRY_CASES])
def test_registry(case, make, extra, expected, tmp_path, tiny_delta, capsys):
    ev = make(tmp_path)
    code, _, err = run_cli(["register", "--delta", str(tiny_delta), "--eval", str(ev),
                            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", *extra], capsys)
    assert_one_error_line(code, err, expected)


def test_register_without_tracking(tmp_path, tiny_delta, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = run_cli(["register", "--delta", str(tiny_delta), "--eval",
                            str(_eval_json(tmp_path, {"de": {"accuracy": 0.5}}))], capsys)
    assert_one_error_line(code, err, "needs an MLflow tracking URI")


def test_runs_compare_accepts_a_numeric_experiment_name(tmp_path, capsys):
    code, _, err = run_cli(["runs", "compare", "--experiment", "2024", "--tracking-uri",
                            f"sqlite:///{tmp_path / 'm.db'}"], capsys)
    assert_one_error_line(code, err, "no MLflow experiment named '2024'")  # looked up as the name it is


# ------------------------------------------------------------------------------- credentials and redaction

def test_placeholder_credentials_refuse_to_start(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "CHANGE_ME")
    code, _, err = run_cli(["data", "synth", "--out", str(tmp_path / "o")], capsys)
    assert_one_error_line(code, err, "AWS_SECRET_ACCESS_KEY hold placeholder values")
    assert not (tmp_path / "o").exists()


def test_tracking_uri_password_never_printed(tmp_path, capsys):
    code, _, err = run_cli(["runs", "compare", "--experiment", "x", "--tracking-uri",
                            "http://admin:hunter22@127.0.0.1:9"], capsys)
    assert code != 0 and "hunter22" not in err and "admin:***@127.0.0.1:9" in err


# ------------------------------------------------------------------------------------ the real terminal

TERMINAL_CASES = [
    ["train", "--config", "/nonexistent.yaml", "train.lr=nan"],
    ["launch", "rayjob", "--print", "--run-id", "r", "--step", "t", "--namespace", "Bad NS", "--", "slam", "train"],
    ["pipeline", "schedules", "--host", "http://127.0.0.1:9"],
    ["data", "validate", "s3:///x"],
]


@pytest.mark.parametrize("argv", TERMINAL_CASES, ids=lambda a: " ".join(a[:2]))
def test_what_the_terminal_shows_is_one_line(argv, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # warnings printed as a user would see them
    r = subprocess.run([sys.executable, "-m", "slam", *argv], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env=env)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
