"""slam evaluate vs lm-evaluation-harness on the same MGSM questions, prompt and decoding; prints ratios and agreement.

    .venv/bin/python bench/vs_lm_eval.py                        # 8 languages x 32 questions, 64 new tokens, batch 16
    .venv/bin/python bench/vs_lm_eval.py --langs en,de,zh,sw --limit 32 --repeat 2
    .venv/bin/python bench/vs_lm_eval.py --report runs/bench-vs-lm-eval        # re-print, no generation

First run creates lm-eval's own virtualenv (`.cache/bench-venvs/lm-eval-<ver>`, a few minutes, PyPI only):
torch==2.13.0 (the CPU wheel on this machine's disk, installed first so pip never pulls a CUDA build) and
`lm-eval[hf]==0.4.13`, with transformers pinned to the version in slam's venv (lm-eval does not pin it;
--peer-transformers '' lets pip choose), so both tools run the same model code and torch kernels.

The lm-eval side is a LOCAL task (lm-eval's own MGSM tasks fetch from the hub): one YAML per language,
`slam_mgsm_<lang>`, generated under <work>/tasks next to bench/lm_eval_task/utils.py: the TSV
(<data>/mgsm_<lang>.tsv, question<TAB>number) read as slam reads it, slam's Alpaca prompt (checked
against slam.prompts.ALPACA), generate_until with do_sample false, max_gen_toks = --max-new-tokens,
until = slam.evaluate.STOP_STRINGS["alpaca"], extraction by lm-eval's regex filter (last number,
the pattern of its MGSM tasks' flexible-extract). It runs through `lm-eval run --model hf
--model_args pretrained=<SmolLM2 dir>,dtype=float32 --device cpu --batch_size 16 --limit N --log_samples`
(the CLI entry point, in-process, with HFLM.generate_until and _model_generate wrapped by timers).
The slam side is `slam evaluate --task mgsm --data <data> --langs ... --limit N --max-new-tokens M
--batch-size 16 --out DIR`.

Prints: wall time of each whole command, generation time (lm-eval: inside generate_until; slam: eval.json
meta.seconds), questions/s, their slam/peer ratios with the issue-18 goal (>= 2x faster), accuracy of each,
and per question: identical completions (after stripping whitespace) and identical extracted answers
(lm-eval's filtered answer as a number vs slam's pred), with the first disagreements shown; also the
lm-eval decode steps per batch (a batch runs until every row has hit the same stop string or EOS).
Machine load before/after each run is printed: the box is shared, rerun when quiet.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import (  # noqa: E402
    REPO,
    SLAM_ENV,
    VENVS,
    ensure_venv,
    fmt,
    log,
    machine_line,
    pip,
    ratio,
    run_measured,
    shared_data,
    slam_cmd,
    smollm2_dir,
    stop_strings,
    tail,
    venv_python,
)
from peers_common import versions as venv_versions  # noqa: E402

LM_EVAL_VERSION = "0.4.13"
PEER_TORCH = "2.13.0"
VERSIONS = ["lm_eval", "torch", "transformers", "accelerate", "datasets"]
TASK_UTILS = Path(__file__).resolve().parent / "lm_eval_task" / "utils.py"
# lm-eval's MGSM "flexible-extract": the last number-ish token
LAST_NUMBER = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"

# Runs inside lm-eval's venv: its CLI, with timers around generation (behaviour unchanged).
LM_EVAL_RUNNER = r'''
import atexit, json, sys, time
from lm_eval.models.huggingface import HFLM

T = {"generate_until_s": 0.0, "init_s": 0.0, "batches": []}
out_path = sys.argv.pop(1)
_gen, _mg, _init = HFLM.generate_until, HFLM._model_generate, HFLM.__init__

def generate_until(self, *a, **k):
    t = time.perf_counter()
    try:
        return _gen(self, *a, **k)
    finally:
        T["generate_until_s"] += time.perf_counter() - t

def _model_generate(self, context, *a, **k):
    t = time.perf_counter()
    out = _mg(self, context, *a, **k)
    T["batches"].append({"rows": int(context.shape[0]), "context": int(context.shape[1]),
                         "steps": int(out.shape[1] - context.shape[1]), "s": time.perf_counter() - t})
    return out

def __init__(self, *a, **k):
    t = time.perf_counter()
    _init(self, *a, **k)
    T["init_s"] += time.perf_counter() - t

HFLM.generate_until, HFLM._model_generate, HFLM.__init__ = generate_until, _model_generate, __init__
atexit.register(lambda: json.dump(T, open(out_path, "w")))
from lm_eval.__main__ import cli_evaluate
cli_evaluate()
'''

TASK_YAML = """task: slam_mgsm_{lang}
custom_dataset: !function utils.load_tsv
dataset_kwargs:
  data_file: {tsv}
test_split: test
output_type: generate_until
doc_to_text: !function utils.doc_to_text
doc_to_target: !function utils.doc_to_target
generation_kwargs:
  until: {until}
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_new}
filter_list:
  - name: last-number
    filter:
      - function: regex
        regex_pattern: {pattern}
        group_select: -1
      - function: take_first
process_results: !function utils.process_results
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def install_lm_eval(transformers_version: str):
    def install(venv: Path) -> None:
        pip(venv, f"torch=={PEER_TORCH}")
        extra = [f"transformers=={transformers_version}"] if transformers_version else []
        pip(venv, f"lm-eval[hf]=={LM_EVAL_VERSION}", f"torch=={PEER_TORCH}", *extra)
    return install


def write_tasks(tasks_dir: Path, data: Path, langs: list[str], max_new: int) -> list[str]:
    from slam.prompts import ALPACA

    ns: dict = {}
    exec(compile(TASK_UTILS.read_text(), str(TASK_UTILS), "exec"), ns)
    if ns["ALPACA"] != ALPACA:
        sys.exit(f"{TASK_UTILS} ALPACA differs from slam.prompts.ALPACA: update the task helper")
    tasks_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(TASK_UTILS, tasks_dir / "utils.py")
    names = []
    for lang in langs:
        tsv = data / f"mgsm_{lang}.tsv"
        if not tsv.is_file():
            sys.exit(f"no {tsv}")
        (tasks_dir / f"slam_mgsm_{lang}.yaml").write_text(TASK_YAML.format(
            lang=lang, tsv=json.dumps(str(tsv.resolve())), until=json.dumps(stop_strings()),
            max_new=max_new, pattern=json.dumps(LAST_NUMBER)))
        names.append(f"slam_mgsm_{lang}")
    return names


def run_lm_eval(a, venv: Path, model: str, tasks_dir: Path, names: list[str], out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "runner.py").write_text(LM_EVAL_RUNNER)
    cmd = [str(venv_python(venv)), str(out / "runner.py"), str(out / "timers.json"), "run",
           "--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu",
           "--tasks", ",".join(names), "--include_path", str(tasks_dir), "--batch_size", str(a.batch_size),
           "--limit", str(a.limit), "--log_samples", "--output_path", str(out / "results"), "--seed", "0"]
    m = run_measured(cmd, log_file=out / "lm_eval.log", env={"CUDA_VISIBLE_DEVICES": ""})
    if m["rc"] != 0 or not (out / "timers.json").is_file():
        sys.exit(f"lm-eval failed (rc {m['rc']}), log {m['log']}:\n{tail(m['log'])}")
    timers = json.loads((out / "timers.json").read_text())
    samples = {}
    for lang in a.langs.split(","):
        files = sorted((out / "results").rglob(f"samples_slam_mgsm_{lang}_*.jsonl"))
        if not files:
            sys.exit(f"lm-eval wrote no samples for {lang} under {out / 'results'}")
        for line in files[-1].read_text().splitlines():
            s = json.loads(line)
            samples[(lang, s["doc"]["question"].strip())] = {
                "completion": s["resps"][0][0], "answer": s["filtered_resps"][0], "acc": s.get("acc")}
    return {**m, "gen_s": timers["generate_until_s"], "init_s": timers["init_s"], "batches": timers["batches"],
            "samples": samples}


def run_slam(a, model: str, data: Path, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = slam_cmd("evaluate", "--model", model, "--task", "mgsm", "--data", str(data), "--langs", a.langs,
                   "--limit", str(a.limit), "--max-new-tokens", str(a.max_new_tokens), "--batch-size",
                   str(a.batch_size), "--out", str(out), "--no-progress")
    m = run_measured(cmd, log_file=out.parent / f"{out.name}.log", env=SLAM_ENV)
    if m["rc"] != 0:
        sys.exit(f"slam evaluate failed (rc {m['rc']}), log {m['log']}:\n{tail(m['log'])}")
    rep = json.loads((out / "eval.json").read_text())
    samples = {(s["lang"], s["question"].strip()): {"completion": s["completion"], "answer": s["pred"],
                                                    "acc": float(s["correct"])} for s in rep["samples"]}
    return {**m, "gen_s": rep["meta"]["seconds"], "new_tokens": rep["meta"]["new_tokens"], "samples": samples}


def _num(x) -> float | None:
    if x is None or isinstance(x, (int, float)):
        return x
    s = str(x).replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(s)
    except ValueError:
        return None


def agreement(lm: dict, sl: dict) -> dict:
    keys = sorted(set(lm) | set(sl))
    both = [k for k in keys if k in lm and k in sl]
    same_c = [k for k in both if lm[k]["completion"].strip() == sl[k]["completion"].strip()]
    same_a = [k for k in both if _num(lm[k]["answer"]) == _num(sl[k]["answer"])]
    diff = [{"lang": k[0], "question": k[1][:80], "lm_eval": lm[k]["completion"].strip(),
             "slam": sl[k]["completion"].strip(), "lm_eval_answer": lm[k]["answer"], "slam_answer": sl[k]["answer"]}
            for k in both if k not in same_c or k not in same_a]
    return {"questions": len(keys), "matched": len(both), "same_completion": len(same_c), "same_answer": len(same_a),
            "acc_lm_eval": statistics.mean(lm[k]["acc"] for k in both) if both else None,
            "acc_slam": statistics.mean(sl[k]["acc"] for k in both) if both else None, "diffs": diff}


def report(res: dict) -> None:
    a = res["args"]
    print(f"\n== slam evaluate vs lm-evaluation-harness {res['versions'].get('lm_eval')}: {a['model_name']}, MGSM "
          f"{a['langs']} x {a['limit']} questions, greedy, {a['max_new_tokens']} new tokens, batch {a['batch_size']}, "
          f"stop at {res['stop_strings']}, fp32 CPU, {len(res['runs'])} repeat(s)")
    print("peer venv: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))
    print("slam venv: " + ", ".join(f"{k} {v}" for k, v in res["slam_versions"].items()))

    def med(tool: str, key: str):
        vals = [r[tool][key] for r in res["runs"] if r[tool].get(key) is not None]
        return statistics.median(vals) if vals else None

    n = res["runs"][0]["agreement"]["matched"]
    rows = [("wall time, whole command (s)", med("slam", "wall_s"), med("lm_eval", "wall_s"), 0.5),
            ("generation time (s)", med("slam", "gen_s"), med("lm_eval", "gen_s"), 0.5),
            ("CPU time user+sys, whole (s)", med("slam", "cpu_s"), med("lm_eval", "cpu_s"), None),
            ("peak RSS (MiB)", med("slam", "peak_rss_mb"), med("lm_eval", "peak_rss_mb"), None)]
    print(f"\n{'':32s}{'slam':>11s}{'lm-eval':>11s}{'slam/peer':>11s}{'speed-up':>10s}  goal")
    for name, s, p, goal in rows:
        r = ratio(s, p)
        g = "" if goal is None else ("speed-up >= 2  " + ("OK" if r is not None and r <= goal else "MISSED"))
        print(f"{name:32s}{fmt(s, ',.1f'):>11s}{fmt(p, ',.1f'):>11s}{fmt(r, '.3f'):>11s}"
              f"{fmt(1 / r if r else None, '.2f'):>10s}  {g}")
    qs = [n / x if x else None for x in (med("slam", "gen_s"), med("lm_eval", "gen_s"))]
    print(f"{'questions/s (generation)':32s}{fmt(qs[0], '.2f'):>11s}{fmt(qs[1], '.2f'):>11s}")
    for i, r in enumerate(res["runs"]):
        ag = r["agreement"]
        print(f"\nrun #{i + 1}: identical completions {ag['same_completion']}/{ag['matched']}, identical extracted "
              f"answers {ag['same_answer']}/{ag['matched']} (questions: {ag['questions']}, matched by text); accuracy "
              f"slam {fmt(ag['acc_slam'], '.3f')}, lm-eval {fmt(ag['acc_lm_eval'], '.3f')}")
        for t in ("lm_eval", "slam"):
            x = r[t]
            print(f"  {t:8s} wall {x['wall_s']:.1f} s, generation {x['gen_s']:.1f} s, load {x['load_before'][0]:.2f} -> "
                  f"{x['load_after'][0]:.2f}")
        b = r["lm_eval"].get("batches") or []
        if b:
            full = sum(1 for x in b if x["steps"] >= res["args"]["max_new_tokens"])
            print(f"  lm-eval batches: {len(b)}, decode steps {sum(x['steps'] for x in b)} "
                  f"({full} batches ran to max_new_tokens); slam generated tokens (no padding): "
                  f"{r['slam'].get('new_tokens')}")
        for d in ag["diffs"][:3]:
            print(f"  DIFF [{d['lang']}] {d['question']!r}\n    lm-eval ({d['lm_eval_answer']}): {d['lm_eval'][:160]!r}"
                  f"\n    slam    ({d['slam_answer']}): {d['slam'][:160]!r}")
    print(f"\nmachine at start: {res['machine_start']}\nmachine at end:   {res['machine_end']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--langs", default="en,de,fr,es,ru,zh,ja,sw")
    ap.add_argument("--limit", type=int, default=32, help="questions per language (the first N of each TSV)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two tools this many times (medians)")
    ap.add_argument("--model", default="", help="HF model dir (default: `slam models import smollm2`)")
    ap.add_argument("--data", default="", help="dir of mgsm_<lang>.tsv (default: $SLAM_SHARED_DATA/mgsm, else the "
                                                "shared/data/mgsm next to the checkout)")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench-vs-lm-eval"))
    ap.add_argument("--venv", default=str(VENVS / f"lm-eval-{LM_EVAL_VERSION}"))
    ap.add_argument("--peer-transformers", default=None,
                    help="transformers version for the lm-eval venv (default: slam's; '' = pip's choice)")
    ap.add_argument("--report", default="", help="re-print the results of an earlier --work dir")
    a = ap.parse_args()
    if a.report:
        report(json.loads((Path(a.report) / "results.json").read_text()))
        return

    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = machine_line()
    log(f"machine: {start}")
    slam_versions = venv_versions(Path(sys.prefix), ["slam", "torch", "transformers"])
    tv = slam_versions["transformers"] if a.peer_transformers is None else a.peer_transformers
    versions = ensure_venv(Path(a.venv), install_lm_eval(tv), VERSIONS)
    model = a.model or smollm2_dir()
    data = Path(a.data) if a.data else shared_data() / "mgsm"
    langs = a.langs.split(",")
    names = write_tasks(work / "tasks", data, langs, a.max_new_tokens)

    runs = []
    for i in range(a.repeat):
        r = {}
        log(f"run {i + 1}/{a.repeat}: lm-eval ({len(langs)} x {a.limit} questions)")
        r["lm_eval"] = run_lm_eval(a, Path(a.venv), model, work / "tasks", names, work / f"lm_eval-{i + 1}")
        log(f"  lm-eval: wall {r['lm_eval']['wall_s']:.1f} s, generation {r['lm_eval']['gen_s']:.1f} s")
        log(f"run {i + 1}/{a.repeat}: slam evaluate")
        r["slam"] = run_slam(a, model, data, work / f"slam-{i + 1}")
        log(f"  slam: wall {r['slam']['wall_s']:.1f} s, generation {r['slam']['gen_s']:.1f} s")
        r["agreement"] = agreement(r["lm_eval"].pop("samples"), r["slam"].pop("samples"))
        runs.append(r)
    res = {"args": {**vars(a), "model_name": Path(model).name}, "versions": versions, "slam_versions": slam_versions,
           "stop_strings": stop_strings(), "runs": runs, "machine_start": start,
           "machine_end": machine_line()}
    (work / "results.json").write_text(json.dumps(res, indent=1))
    report(res)
    print(f"\nraw numbers: {work / 'results.json'} (re-print: --report {work})")


if __name__ == "__main__":
    main()
