"""SLAM vs full fine-tuning (and vs the two-stage QAlign recipe) on the same model, data and steps; prints ratios.

    .venv/bin/python bench/train_vs_full.py                                   # SmolLM2-135M + synthetic world
    .venv/bin/python bench/train_vs_full.py --model tiny --steps 6            # seconds, for a smoke check
    .venv/bin/python bench/train_vs_full.py --layers 0-5 --steps 20 --engine deepspeed
    .venv/bin/python bench/train_vs_full.py --steps 60 --val-every 5 --acc-limit 12 --acc-every 20

Each method runs `slam.train.train_loop` in its own subprocess (no Ray), so peak memory is that
process's peak RSS; "training-state memory" subtracts the peak RSS of a process that only loads the
model (weights are the same for both methods). Step time = median over steps after the first two.
Checkpoint size = the final checkpoint dir (delta tensors + optimizer/scheduler state + RNG).
Goals (issue 5): step time <= 0.75x, memory <= 0.5x, checkpoint <= 0.1x of full fine-tuning.

Single-stage SLAM vs two-stage: every method validates on the same rows, the target task (questions in
every language, English CoT answers: `train.val_tasks=[cot]`), every --val-every steps (loss) and every
--acc-every steps (greedy accuracy on --acc-limit questions per language). The x axis is training time:
steps x the median optimizer-step seconds of that stage (validation excluded; robust to a transient
slow step), stage 1 + stage 2 for two-stage. We report the
time each method first reaches a common target: the best value *both* reach (the weaker method's best),
and whether each reaches the other's best at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
if args["mode"] == "load":
    from slam.models import load_model_and_tokenizer
    load_model_and_tokenizer(args["model"], dtype="float32", device="cpu")
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    raise SystemExit
from slam.config import load_config, to_dict
from slam.train import train_local
cfg = load_config(None, args["overrides"])
t = time.time()
out = train_local(cfg, args["storage"])
out["wall"] = time.time() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out, default=str))
"""


def child(payload: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"bench child failed:\n{r.stderr[-3000:]}")
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ") or ln.startswith("{")][-1]
    return json.loads(line.removeprefix("RESULT "))


def dir_mb(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def final_state(run_dir: Path) -> dict:
    """The trainer_state.json of a run's latest checkpoint (history of steps, validation points)."""
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["uri"]
    return json.loads((Path(latest) / "trainer_state.json").read_text())


def timeline(storage_root: Path, method: str, run_name: str) -> list[dict]:
    """Validation points [{step, train_time, val_loss, val_accuracy?}] over all stages of one method."""
    dirs = ([storage_root / run_name.replace("-stage2", "-stage1"), storage_root / run_name]
            if method == "two-stage" else [storage_root / run_name])
    points, offset, steps = [], 0.0, 0
    for d in dirs:
        state = final_state(d)
        # steps x median step time: one slow step (another process on the box) does not move the whole curve
        med = statistics.median(h["step_time"] for h in state["history"])
        points += [{**v, "measured_time": v["train_time"] + offset, "train_time": v["step"] * med + offset,
                    "step": v["step"] + steps} for v in state["val"]]
        offset += state["step"] * med
        steps += state["step"]
    return points


def time_to(points: list[dict], metric: str, target: float) -> float | None:
    """Training time of the first validation point at least as good as target (None: never)."""
    better = (lambda v: v <= target + 1e-12) if metric == "val_loss" else (lambda v: v >= target - 1e-12)
    return next((p["train_time"] for p in points if metric in p and better(p[metric])), None)


def best(points: list[dict], metric: str) -> float | None:
    vals = [p[metric] for p in points if metric in p]
    return (min(vals) if metric == "val_loss" else max(vals)) if vals else None


def race(runs: dict, a: str, b: str, metric: str) -> None:
    ta, tb = runs[a]["timeline"], runs[b]["timeline"]
    ba, bb = best(ta, metric), best(tb, metric)
    if ba is None or bb is None:
        return
    common = max(ba, bb) if metric == "val_loss" else min(ba, bb)
    xa, xb = time_to(ta, metric, common), time_to(tb, metric, common)
    print(f"  {metric}: best {a} {ba:.4f}, {b} {bb:.4f}; common target {common:.4f} reached after "
          f"{a} {xa:.1f} s, {b} {xb:.1f} s of training -> {b}/{a} = {xb / max(xa, 1e-9):.2f}x")
    for x, bx, y, ty in [(a, ba, b, tb), (b, bb, a, ta)]:
        t = time_to(ty, metric, bx)
        print(f"    {y} {'reaches' if t is not None else 'never reaches'} {x}'s best {bx:.4f}"
              + (f" after {t:.1f} s" if t is not None else ""))
    for name, pts in [(a, ta), (b, tb)]:
        print(f"    {name:10s} " + "  ".join(f"{p['train_time']:.0f}s:{p[metric]:.3f}" for p in pts if metric in p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="HF model dir, 'smollm2' (imported) or 'tiny'")
    ap.add_argument("--data", default="", help="built dataset dir (default: a fresh `slam data synth` world)")
    ap.add_argument("--layers", default="0-5")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--engine", default="torch", choices=["torch", "deepspeed"])
    ap.add_argument("--no-two-stage", action="store_true")
    ap.add_argument("--val-limit", type=int, default=96, help="validation rows for the loss")
    ap.add_argument("--val-every", type=int, default=0, help="steps between validation losses (0 = steps/6)")
    ap.add_argument("--acc-limit", type=int, default=0, help="questions per language for val accuracy (0 = off)")
    ap.add_argument("--acc-every", type=int, default=0, help="steps between val accuracies (0 = only at the end)")
    ap.add_argument("--langs", default="en,de,fr,zh,th,sw", help="languages of the synthetic world")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="for every method")
    ap.add_argument("--report", default="", help="re-print the report of an earlier run's work dir (no training)")
    a = ap.parse_args()
    if a.report:
        work = Path(a.report)
        if (work / "args.json").is_file():
            a = argparse.Namespace(**json.loads((work / "args.json").read_text()))
        runs = json.loads((work / "bench.json").read_text())
        for method, r in runs.items():
            r["timeline"] = timeline(work / method, method, r["run_name"])
        summarize(runs, a)
        return

    work = Path(tempfile.mkdtemp(prefix="slam-bench-"))
    (work / "args.json").write_text(json.dumps(vars(a)))
    if a.model == "smollm2":
        from slam.models import import_smollm2

        a.model = str(import_smollm2())
    if not a.data:
        from slam.data.synth import synth

        synth(str(work / "synth"), langs=a.langs.split(","), n_train=300, n_val=20, n_test=10, n_probe=8, seed=0)
        a.data = str(work / "synth")
    if a.model == "tiny":
        from slam.data.build import read_examples
        from slam.testing import save_tiny

        texts = [r["instruction"] + " " + r["response"] for r in read_examples(a.data, "train")[:500]]
        a.model = str(save_tiny(work / "tiny", "llama", num_layers=8, texts=texts, hidden_size=64,
                                intermediate_size=256))

    base = [f"model.path={a.model}", f"data.train={a.data}", f"train.max_steps={a.steps}", f"train.lr={a.lr}",
            f"train.micro_batch_size={a.micro}", f"train.engine={a.engine}", "train.checkpoint_every=0",
            f"train.val_max_examples={a.val_limit}", "train.val_tasks=cot",
            f"train.val_every={a.val_every or max(1, a.steps // 6)}", f"train.val_accuracy_limit={a.acc_limit}",
            f"train.val_accuracy_every={a.acc_every}", f"train.gradient_checkpointing={a.gradient_checkpointing}"]
    load = child({"mode": "load", "model": a.model})
    runs = {}
    for method in ["slam", "full"] + ([] if a.no_two_stage else ["two-stage"]):
        extra = [f"train.layers={a.layers}"] if method == "slam" else []
        print(f"running {method} ({a.steps} steps{' per stage' if method == 'two-stage' else ''})...", flush=True)
        out = child({"mode": "train", "overrides": [*base, f"train.method={method}", *extra],
                     "storage": str(work / method)})
        run_dir = work / method / out["run_name"]
        out["step_time"] = statistics.median([h["step_time"] for h in final_state(run_dir)["history"][2:]] or [float("nan")])
        ckpt = Path(json.loads((run_dir / "checkpoints" / "latest.json").read_text())["uri"])
        out["ckpt_mb"], out["delta_mb"] = dir_mb(ckpt), dir_mb(Path(out["delta_uri"]))
        out["state_mb"] = out["peak_rss_mb"] - load["peak_rss_mb"]
        out["timeline"] = timeline(work / method, method, out["run_name"])
        runs[method] = out

    (work / "bench.json").write_text(json.dumps(runs, indent=1, default=str))
    summarize(runs, a)
    print(f"\nraw numbers: {work / 'bench.json'} (re-print: --report {work})")


def summarize(runs: dict, a: argparse.Namespace) -> None:
    s, f = runs["slam"], runs["full"]
    print(f"\nmodel {a.model}, {a.steps} steps, micro-batch {a.micro}, engine {a.engine}, SLAM layers {a.layers}, "
          f"gradient checkpointing {a.gradient_checkpointing}")
    print(f"{'':28s}{'SLAM':>14s}{'full FT':>14s}{'ratio':>9s}  goal")
    rows = [("trainable params", s["trainable"], f["trainable"], None),
            ("step time (s, median)", s["step_time"], f["step_time"], 0.75),
            ("peak RSS (MiB)", s["peak_rss_mb"], f["peak_rss_mb"], None),
            ("training-state memory (MiB)", s["state_mb"], f["state_mb"], 0.5),
            ("checkpoint (MiB)", s["ckpt_mb"], f["ckpt_mb"], 0.1),
            ("delta artifact (MiB)", s["delta_mb"], f["delta_mb"], None),
            ("val loss after training", s["val_loss"], f["val_loss"], None)]
    if "val_accuracy" in s and "val_accuracy" in f:
        rows.append(("val accuracy after training", s["val_accuracy"], f["val_accuracy"], None))
    for name, x, y, goal in rows:
        r = x / y if y else float("nan")
        mark = "" if goal is None else (f"<= {goal}  {'OK' if r <= goal else 'MISSED'}")
        print(f"{name:28s}{x:>14,.3f}{y:>14,.3f}{r:>9.3f}  {mark}")
    print("\ntime to a common validation target (training time = steps x median step seconds, validation excluded):")
    for other in [m for m in ("full", "two-stage") if m in runs]:
        print(f" SLAM vs {other}:")
        for metric in ("val_loss", "val_accuracy"):
            race(runs, "slam", other, metric)
    print(" total wall (incl. load, validation): " + ", ".join(f"{m} {r['wall']:.0f} s" for m, r in runs.items()))


if __name__ == "__main__":
    main()
