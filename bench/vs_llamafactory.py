"""slam vs LLaMA-Factory freeze tuning: same model, rows, trainable tensors and hyper-parameters, on CPU; prints ratios.

    .venv/bin/python bench/vs_llamafactory.py                   # SmolLM2-135M, layers 0-5 gate+up+down, 14 steps
    .venv/bin/python bench/vs_llamafactory.py --steps 30 --layers 6 --repeat 2
    .venv/bin/python bench/vs_llamafactory.py --report runs/bench-vs-llamafactory     # re-print, no training

First run creates LLaMA-Factory's own virtualenv (`.cache/bench-venvs/llamafactory-<ver>`, a few minutes,
~2 GB, PyPI only): torch==2.13.0 (the CPU wheel on this machine's disk, the same torch as slam's, installed
first so pip never pulls a CUDA build), then `llamafactory==0.9.5` and its requirements with pip, except
torchvision (not installed: LLaMA-Factory never imports it, transformers treats it as absent) and
torchaudio, which LLaMA-Factory imports unconditionally (data/mm_plugin.py) but only uses for audio
inputs: no torchaudio release matches torch 2.13, so torchaudio 2.11.1 is installed without deps and
without its native libraries (torchaudio then imports in its documented "extension not available" mode).
LLaMA-Factory brings its own transformers (<= 5.6.0; slam's venv has 5.24) and accelerate/datasets/peft/trl.

What runs (one process each, no Ray/torchrun, fp32, CPU, the machine's default thread count):
- the data: the first steps x batch rows of the synthetic world's train split (`slam data synth`, made if
  missing), i.e. exactly one epoch for both tools, so both see the same rows and the same total tokens;
  written as slam's train.jsonl and as LLaMA-Factory alpaca JSON + dataset_info.json.
- LLaMA-Factory 0.9.5: `run_exp(args, callbacks=[timer])`, the function `llamafactory-cli train cfg.yaml`
  calls on a single-device machine, with stage sft, `finetuning_type: freeze`,
  `freeze_trainable_layers: -k` (negative = the FIRST k layers, see llamafactory/model/adapter.py),
  `freeze_trainable_modules: mlp` (gate+up+down), template alpaca, cutoff_len = --max-length, batch 4,
  lr 2e-4 cosine, no warm-up, max_steps N, no eval; everything else at its SFT defaults: gradient
  checkpointing ON, no packing, pad to the batch's longest rounded up to 8, SDPA attention, HF Trainer
  loss over the full logits, fused torch AdamW, shuffled batches, a model save + checkpoint at the end.
  (--lf-set disable_gradient_checkpointing=true gives the like-for-like compute comparison.) The timer
  callback records on_step_end times, the trainable tensor names and HF's non-padding token count.
- slam: `slam train --no-ray` with train.method=slam, train.layers=0..k-1, roles gate/up/down,
  train.engine=torch (--slam-engine), the same batch/lr/schedule/steps/max_length, alpaca prompt;
  everything else at slam's defaults (chunked response-only loss, no gradient checkpointing, pad to the
  batch's longest, seeded shuffle). Step times from the run's final checkpoint trainer_state.json.
  (--slam-set train.gradient_checkpointing=true etc. to try slam variants.)

Measured per tool: optimizer-step time (median, mean; LLaMA-Factory: time between consecutive step ends,
the first from train begin, i.e. what slam's step_time covers plus HF's per-step logging), non-padding
tokens/s (tokens of the epoch / sum of step times; tokens counted as attention-mask ones for both),
peak RSS of the process (wait4 rusage) and of its process tree (psutil), what it saves (LLaMA-Factory:
its output_dir; slam: the delta artifact, and the whole run dir with optimizer state), final and mean
train loss, wall time. Prints the trainable tensors of both (must match), a slam/peer ratio table with the
issue-18 goals, the versions and the machine load before/after each run (the box is shared: rerun quiet).
Results go to <work>/results.json; large outputs (LLaMA-Factory's saved model) are deleted unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import (  # noqa: E402
    REPO,
    SLAM_ENV,
    VENVS,
    dir_mb,
    ensure_venv,
    fmt,
    log,
    machine_line,
    pip,
    ratio,
    run_measured,
    slam_cmd,
    smollm2_dir,
    tail,
    venv_python,
)

LF_VERSION = "0.9.5"
PEER_TORCH = "2.13.0"
TORCHAUDIO_FOR_IMPORT = "2.11.1"
VERSIONS = ["llamafactory", "torch", "transformers", "accelerate", "datasets", "peft", "trl", "torchaudio"]

# Runs inside LLaMA-Factory's venv. Same call as `llamafactory-cli train cfg.yaml` (launcher.launch ->
# tuner.run_exp) on a machine with <= 1 device, plus a timing callback.
LF_RUNNER = r'''
import json, sys, time
import yaml
from transformers import TrainerCallback

class StepTimer(TrainerCallback):
    def __init__(self, path):
        self.path, self.ev = path, {"train_begin": None, "step_begin": [], "step_end": [], "tokens_seen": []}

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.ev["train_begin"] = time.perf_counter()
        if model is not None:
            ps = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            self.ev["trainable_names"] = sorted(n for n, _ in ps)
            self.ev["trainable"] = sum(p.numel() for _, p in ps)
            self.ev["dtypes"] = sorted({str(p.dtype) for _, p in model.named_parameters()})

    def on_step_begin(self, args, state, control, **kw):
        self.ev["step_begin"].append(time.perf_counter())

    def on_step_end(self, args, state, control, **kw):
        self.ev["step_end"].append(time.perf_counter())
        self.ev["tokens_seen"].append(int(state.num_input_tokens_seen or 0))

    def on_train_end(self, args, state, control, **kw):
        self.ev["train_end"] = time.perf_counter()
        self.ev["log_history"] = state.log_history
        self.ev["optim"] = str(args.optim)
        with open(self.path, "w") as f:
            json.dump(self.ev, f)

from llamafactory.train.tuner import run_exp
with open(sys.argv[1]) as f:
    cfg = yaml.safe_load(f)
run_exp(args=cfg, callbacks=[StepTimer(sys.argv[2])])
'''


def install_llamafactory(venv: Path) -> None:
    pip(venv, f"torch=={PEER_TORCH}")
    pip(venv, "--no-deps", f"llamafactory=={LF_VERSION}", f"torchaudio=={TORCHAUDIO_FOR_IMPORT}")
    # torchaudio's native libs are built for torch 2.11 and fail to load beside 2.13; without them
    # `import torchaudio` works (its no-extension mode) and text SFT never calls an audio op.
    py = str(venv_python(venv))
    code = ("import importlib.util, pathlib\n"
            "d = pathlib.Path(importlib.util.find_spec('torchaudio').submodule_search_locations[0]) / 'lib'\n"
            "[f.unlink() for f in d.glob('*.so')]\n"
            "from importlib.metadata import requires\n"
            "skip = ('torch', 'torchaudio', 'torchvision')\n"
            "import re\n"
            "for r in requires('llamafactory'):\n"
            "    name = re.split(r'[<>=!~ ;\\[]', r, maxsplit=1)[0].strip().lower()\n"
            "    if 'extra ==' not in r and name not in skip: print(r.split(';')[0].strip())\n")
    import subprocess

    reqs = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True).stdout.split("\n")
    # torch pinned in the same resolve, so no requirement can swap it for another (CUDA) build
    pip(venv, f"torch=={PEER_TORCH}", *[r for r in reqs if r])
    subprocess.run([py, "-c", "import torchaudio, llamafactory.data.mm_plugin, llamafactory.train.tuner"], check=True)


def build_data(work: Path, world: Path, n_rows: int, n_val: int) -> tuple[Path, Path, list[dict]]:
    rows = [json.loads(x) for x in (world / "train.jsonl").read_text().splitlines() if x.strip()][:n_rows]
    if len(rows) < n_rows:
        sys.exit(f"{world}/train.jsonl has {len(rows)} rows; steps x batch needs {n_rows}")
    val = [json.loads(x) for x in (world / "val.jsonl").read_text().splitlines() if x.strip()][:n_val]
    sd, ld = work / "data" / "slam", work / "data" / "llamafactory"
    sd.mkdir(parents=True, exist_ok=True)
    ld.mkdir(parents=True, exist_ok=True)
    (sd / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (sd / "val.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in val))
    (ld / "slam_world.json").write_text(json.dumps(
        [{"instruction": r["instruction"], "input": "", "output": r["response"]} for r in rows], ensure_ascii=False,
        indent=0))
    (ld / "dataset_info.json").write_text(json.dumps({"slam_world": {"file_name": "slam_world.json"}}, indent=1))
    return sd, ld, rows


def slam_tokens(model: str, rows: list[dict], max_length: int) -> int:
    """Non-padding tokens of the epoch as slam encodes it (prompt + response + EOS per row)."""
    from transformers import AutoTokenizer

    from slam.prompts import encode_example

    tok = AutoTokenizer.from_pretrained(model)
    return sum(len(e["input_ids"]) for r in rows
               if (e := encode_example(tok, r["instruction"], r["response"], "alpaca", max_length)) is not None)


def run_llamafactory(a, venv: Path, model: str, data_dir: Path, out: Path) -> dict:
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_name_or_path": model, "stage": "sft", "do_train": True,
        "finetuning_type": "freeze", "freeze_trainable_layers": -a.layers, "freeze_trainable_modules": "mlp",
        "dataset": "slam_world", "dataset_dir": str(data_dir), "template": "alpaca", "cutoff_len": a.max_length,
        "overwrite_cache": True, "output_dir": str(out / "output"), "overwrite_output_dir": True,
        "logging_steps": 1, "per_device_train_batch_size": a.batch, "gradient_accumulation_steps": 1,
        "learning_rate": a.lr, "lr_scheduler_type": "cosine", "warmup_ratio": 0.0, "max_steps": a.steps,
        "report_to": "none", "include_num_input_tokens_seen": "non_padding",
        **{k: yaml.safe_load(v) for k, v in (x.split("=", 1) for x in a.lf_set)},
    }
    (out / "lf.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (out / "runner.py").write_text(LF_RUNNER)
    m = run_measured([str(venv_python(venv)), str(out / "runner.py"), str(out / "lf.yaml"), str(out / "timer.json")],
                     log_file=out / "llamafactory.log", env={"CUDA_VISIBLE_DEVICES": ""})
    if m["rc"] != 0 or not (out / "timer.json").is_file():
        sys.exit(f"LLaMA-Factory run failed (rc {m['rc']}), log {m['log']}:\n{tail(m['log'])}")
    ev = json.loads((out / "timer.json").read_text())
    ends = ev["step_end"]
    steps = [ends[0] - ev["train_begin"]] + [b - a_ for a_, b in zip(ends, ends[1:], strict=False)]
    compute = [e - b for b, e in zip(ev["step_begin"], ends, strict=False)]
    losses = [h["loss"] for h in ev["log_history"] if "loss" in h]
    res = {**m, "steps": steps, "compute_steps": compute, "tokens": ev["tokens_seen"][-1] if ev["tokens_seen"] else None,
           "trainable": ev.get("trainable"), "trainable_names": ev.get("trainable_names"), "dtypes": ev.get("dtypes"),
           "optim": ev.get("optim"), "losses": losses, "saved_mb": dir_mb(out / "output"),
           "model_mb": sum(f.stat().st_size for f in (out / "output").iterdir() if f.is_file()) / 2**20,
           "ckpt_mb": sum(dir_mb(d) for d in (out / "output").glob("checkpoint-*")),
           "saved_files": sorted(p.name for p in (out / "output").iterdir()) if (out / "output").exists() else []}
    if not a.keep:
        for f in (out / "output").rglob("*.safetensors"):
            f.unlink()
        for f in (out / "output").rglob("optimizer.pt"):
            f.unlink()
    return res


def run_slam(a, model: str, data_dir: Path, out: Path, tag: str) -> dict:
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model": {"path": model},
        "data": {"train": str(data_dir), "prompt": "alpaca", "max_length": a.max_length},
        "train": {"method": "slam", "layers": list(range(a.layers)), "roles": ["gate", "up", "down"],
                  "engine": a.slam_engine, "lr": a.lr, "warmup_ratio": 0.0, "min_lr_ratio": 0.0,
                  "max_steps": a.steps, "micro_batch_size": a.batch, "grad_accum": 1, "num_workers": 1,
                  "val_every": 0, "val_max_examples": 8, "checkpoint_every": 0, "report_every": 0,
                  "run_name": f"bench-{tag}"},
        "storage": {"root": str(out / "runs")},
    }
    for x in a.slam_set:
        key, v = x.split("=", 1)
        sec, k = key.split(".", 1)
        cfg.setdefault(sec, {})[k] = yaml.safe_load(v)
    (out / "slam.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if (out / "runs").exists():
        shutil.rmtree(out / "runs")  # a previous run would be resumed, not re-measured
    m = run_measured(slam_cmd("train", "--config", str(out / "slam.yaml"), "--no-ray"), log_file=out / "slam.log",
                     env=SLAM_ENV)
    if m["rc"] != 0:
        sys.exit(f"slam run failed (rc {m['rc']}), log {m['log']}:\n{tail(m['log'])}")
    run_dir = out / "runs" / f"bench-{tag}"
    latest = Path(json.loads((run_dir / "checkpoints" / "latest.json").read_text())["uri"])
    state = json.loads((latest / "trainer_state.json").read_text())
    manifest = json.loads((run_dir / "delta" / "manifest.json").read_text())
    text = Path(m["log"]).read_text(errors="replace")
    final = {}
    if "{\n" in text:
        try:
            final = json.loads(text[text.rindex("\n{\n") + 1: text.rindex("\n}") + 2])
        except ValueError:
            pass
    return {**m, "steps": [h["step_time"] for h in state["history"]], "losses": [h["train_loss"] for h in state["history"]],
            "trainable": manifest.get("trainable"), "trainable_names": manifest.get("tensors"),
            "quarantined": final.get("quarantined"), "model_mb": dir_mb(run_dir / "delta"),
            "saved_mb": dir_mb(run_dir), "ckpt_mb": dir_mb(latest)}


def summarize_run(r: dict, tokens: int | None) -> dict:
    st = r["steps"]
    return {"median_step": statistics.median(st), "mean_step": statistics.mean(st),
            "mean_step_after_1": statistics.mean(st[1:]) if len(st) > 1 else st[0],
            "tokens_per_s": tokens / sum(st) if tokens else None, "final_loss": r["losses"][-1] if r["losses"] else None,
            "mean_loss": statistics.mean(r["losses"]) if r["losses"] else None}


def report(res: dict) -> None:
    a = res["args"]
    print(f"\n== slam vs LLaMA-Factory {res['versions'].get('llamafactory')}: {a['model_name']}, first {a['layers']} layers "
          f"gate+up+down, {a['steps']} steps x batch {a['batch']}, lr {a['lr']} cosine, max_length {a['max_length']}, "
          f"fp32 CPU, slam engine {a['slam_engine']}, {len(res['runs'])} repeat(s)"
          + (f"; LLaMA-Factory extra {a['lf_set']}" if a.get("lf_set") else "")
          + (f"; slam extra {a['slam_set']}" if a.get("slam_set") else ""))
    print("peer venv: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))
    print("slam venv: " + ", ".join(f"{k} {v}" for k, v in res["slam_versions"].items()))
    lf_names, sl_names = res["runs"][0]["llamafactory"]["trainable_names"], res["runs"][0]["slam"]["trainable_names"]
    same = sorted(lf_names or []) == sorted(sl_names or [])
    print(f"trainable tensors: LLaMA-Factory {res['runs'][0]['llamafactory']['trainable']:,} in {len(lf_names or [])} "
          f"tensors, slam {res['runs'][0]['slam']['trainable']:,} in {len(sl_names or [])} tensors -> "
          f"{'IDENTICAL names' if same else 'DIFFERENT: ' + str(sorted(set(lf_names or []) ^ set(sl_names or []))[:6])}")
    print(f"LLaMA-Factory param dtypes {res['runs'][0]['llamafactory'].get('dtypes')}, optimizer "
          f"{res['runs'][0]['llamafactory'].get('optim')}; slam quarantined rows: {res['runs'][0]['slam'].get('quarantined')}")
    print(f"non-padding tokens in the epoch: slam {res['tokens']['slam']:,}, LLaMA-Factory "
          f"{fmt(res['tokens']['llamafactory'], ',')} (its alpaca template: '\\n' after '### Response:', '\\n\\n' after EOS)")

    def med(tool: str, key: str):
        vals = [s[tool][key] for s in res["summary"] if s[tool][key] is not None]
        return statistics.median(vals) if vals else None

    def raw(tool: str, key: str):
        vals = [r[tool][key] for r in res["runs"] if r[tool].get(key) is not None]
        return statistics.median(vals) if vals else None

    rows = [
        ("step time, median (s)", med("slam", "median_step"), med("llamafactory", "median_step"), "<= 0.6", True),
        ("step time, mean (s)", med("slam", "mean_step"), med("llamafactory", "mean_step"), "<= 0.6", True),
        ("step time, mean w/o step 1 (s)", med("slam", "mean_step_after_1"), med("llamafactory", "mean_step_after_1"), "", True),
        ("tokens/s (non-padding)", med("slam", "tokens_per_s"), med("llamafactory", "tokens_per_s"), ">= 1.67", False),
        ("peak RSS, process (MiB)", raw("slam", "peak_rss_mb"), raw("llamafactory", "peak_rss_mb"), "<= 0.7", True),
        ("peak RSS, process tree (MiB)", raw("slam", "peak_tree_rss_mb"), raw("llamafactory", "peak_tree_rss_mb"), "", True),
        ("model artifact (MiB)", raw("slam", "model_mb"), raw("llamafactory", "model_mb"), "<= 0.1", True),
        ("checkpoint incl. optimizer (MiB)", raw("slam", "ckpt_mb"), raw("llamafactory", "ckpt_mb"), "", True),
        ("everything written (MiB)", raw("slam", "saved_mb"), raw("llamafactory", "saved_mb"), "", True),
        ("final train loss", med("slam", "final_loss"), med("llamafactory", "final_loss"), "~1 (noise)", None),
        ("mean train loss over the run", med("slam", "mean_loss"), med("llamafactory", "mean_loss"), "~1", None),
        ("wall time, whole run (s)", raw("slam", "wall_s"), raw("llamafactory", "wall_s"), "", True),
        ("CPU time user+sys, whole run (s)", raw("slam", "cpu_s"), raw("llamafactory", "cpu_s"), "", True),
    ]
    print(f"\n{'':36s}{'slam':>12s}{'LLaMA-F.':>12s}{'slam/peer':>11s}  goal")
    for name, s, p, goal, lower_better in rows:
        r = ratio(s, p)
        ok = ""
        if goal and r is not None and lower_better is not None:
            g = float(goal.split()[-1])
            ok = "  OK" if (r <= g if lower_better else r >= g) else "  MISSED"
        print(f"{name:36s}{fmt(s, ',.3f'):>12s}{fmt(p, ',.3f'):>12s}{fmt(r, '.3f'):>11s}  {goal}{ok}")
    tr, lm = res["runs"][0]["slam"]["trainable"], raw("llamafactory", "model_mb")
    if tr and lm:
        print(f"(model artifact: slam's delta dir vs LLaMA-Factory's output_dir top level, the whole model; the "
              f"trained tensors in fp32 are {tr * 4 / 2**20:.1f} MiB = {tr * 4 / 2**20 / lm:.3f} of that, the floor "
              f"of this ratio for an fp32 delta)")
    print("\nper run (step seconds):")
    for i, r in enumerate(res["runs"]):
        for tool in ("llamafactory", "slam"):
            x = r[tool]
            print(f"  #{i + 1} {tool:12s} " + " ".join(f"{t:.2f}" for t in x["steps"])
                  + f"  | load {x['load_before'][0]:.2f} -> {x['load_after'][0]:.2f}")
        lf = r["llamafactory"]
        if lf.get("compute_steps"):
            print(f"  #{i + 1} LLaMA-F. step_begin->step_end median {statistics.median(lf['compute_steps']):.3f} s "
                  f"(without batch fetch and logging)")
    print(f"\nLLaMA-Factory saved: {', '.join(res['runs'][0]['llamafactory']['saved_files'])}")
    print(f"machine at start: {res['machine_start']}\nmachine at end:   {res['machine_end']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=14, help="optimizer steps (= one epoch of steps x batch rows)")
    ap.add_argument("--layers", type=int, default=6, help="k: train gate+up+down of layers 0..k-1")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-length", type=int, default=384, help="slam data.max_length = LLaMA-Factory cutoff_len")
    ap.add_argument("--slam-engine", default="torch", choices=["torch", "deepspeed"])
    ap.add_argument("--lf-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra LLaMA-Factory option, e.g. disable_gradient_checkpointing=true (repeatable)")
    ap.add_argument("--slam-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="extra slam config value, e.g. train.gradient_checkpointing=true (repeatable)")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two tools this many times (medians)")
    ap.add_argument("--only", choices=["both", "slam", "llamafactory"], default="both", help="(debugging)")
    ap.add_argument("--model", default="", help="HF model dir (default: `slam models import smollm2`)")
    ap.add_argument("--data", default="", help="a `slam data synth` dir (default: made under --work)")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench-vs-llamafactory"))
    ap.add_argument("--venv", default=str(VENVS / f"llamafactory-{LF_VERSION}"))
    ap.add_argument("--keep", action="store_true", help="keep LLaMA-Factory's saved model (~540 MB a run)")
    ap.add_argument("--report", default="", help="re-print the results of an earlier --work dir")
    a = ap.parse_args()
    if a.report:
        report(json.loads((Path(a.report) / "results.json").read_text()))
        return

    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = machine_line()
    log(f"machine: {start}")
    venv = Path(a.venv)
    versions = ensure_venv(venv, install_llamafactory, VERSIONS)
    from peers_common import versions as venv_versions

    slam_versions = venv_versions(Path(sys.prefix), ["slam", "torch", "transformers", "deepspeed"])
    model = a.model or smollm2_dir()
    world = Path(a.data) if a.data else work / "world"
    if not (world / "train.jsonl").is_file():
        import subprocess

        log(f"making the synthetic world in {world}")
        subprocess.run(slam_cmd("data", "synth", "--out", str(world), "--langs", "en,de,fr,zh,th,sw"), check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, **SLAM_ENV})
    sd, ld, rows = build_data(work, world, a.steps * a.batch, 8)
    tokens = {"slam": slam_tokens(model, rows, a.max_length), "llamafactory": None}

    runs, summary = [], []
    for i in range(a.repeat):
        r = {}
        for tool in ("llamafactory", "slam"):
            if a.only not in ("both", tool):
                continue
            log(f"run {i + 1}/{a.repeat}: {tool} ({a.steps} steps); load {os.getloadavg()[0]:.2f}")
            if tool == "llamafactory":
                r[tool] = run_llamafactory(a, venv, model, ld, work / f"llamafactory-{i + 1}")
                tokens["llamafactory"] = r[tool]["tokens"]
            else:
                r[tool] = run_slam(a, model, sd, work / f"slam-{i + 1}", str(i + 1))
            log(f"  {tool}: median step {statistics.median(r[tool]['steps']):.3f} s, wall {r[tool]['wall_s']:.0f} s, "
                f"peak RSS {r[tool]['peak_rss_mb']:.0f} MiB")
        runs.append(r)
        summary.append({t: summarize_run(x, tokens[t]) for t, x in r.items()})
    if a.only != "both":
        print(json.dumps(summary, indent=1))
        return
    res = {"args": {**vars(a), "model_name": Path(model).name}, "versions": versions, "slam_versions": slam_versions,
           "tokens": tokens, "runs": runs, "summary": summary, "machine_start": start, "machine_end": machine_line()}
    (work / "results.json").write_text(json.dumps(res, indent=1))
    report(res)
    print(f"\nraw numbers: {work / 'results.json'} (re-print: --report {work})")


if __name__ == "__main__":
    main()
