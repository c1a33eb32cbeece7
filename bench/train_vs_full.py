"""SLAM vs full fine-tuning (and vs the two-stage QAlign recipe) on the same model, data and steps; prints ratios.

    .venv/bin/python bench/train_vs_full.py                                   # SmolLM2-135M + synthetic world
    .venv/bin/python bench/train_vs_full.py --model tiny --steps 6            # seconds, for a smoke check
    .venv/bin/python bench/train_vs_full.py --layers 0-5 --steps 20 --engine deepspeed

Each method runs `slam.train.train_loop` in its own subprocess (no Ray), so peak memory is that
process's peak RSS; "training-state memory" subtracts the peak RSS of a process that only loads the
model (weights are the same for both methods). Step time = median over steps after the first two.
Checkpoint size = the final checkpoint dir (delta tensors + optimizer/scheduler state + RNG).
Goals (issue 5): step time <= 0.75x, memory <= 0.5x, checkpoint <= 0.1x of full fine-tuning.

Single-stage SLAM vs two-stage: both get the same step budget per stage; then both deltas are scored
on one common metric, the validation loss on the multilingual CoT validation rows (accuracy from
160-token generation is too noisy at these sizes), and we report the wall time each needed.
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


def history(run_dir: Path) -> list[dict]:
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["uri"]
    return json.loads((Path(latest) / "trainer_state.json").read_text())["history"]


def common_val_loss(model_path: str, delta_uri: str, data: str, template: str, limit: int) -> float:
    """Mean token loss of base+delta on the multilingual CoT validation rows (the same rows for every method)."""
    import torch

    from slam.delta import load_model_with_delta
    from slam.prompts import collate
    from slam.train_parts import encode_rows, read_split, select_rows

    model, tok = load_model_with_delta(model_path, delta_uri, dtype="float32", device="cpu")
    rows = select_rows(read_split(data, "val"), ["cot"], None)[:limit]
    ex, _ = encode_rows(tok, rows, template, 1024)
    tot = cnt = 0.0
    with torch.no_grad():
        for i in range(0, len(ex), 8):
            b = collate(ex[i:i + 8], tok.pad_token_id)
            n = float((b["labels"][:, 1:] != -100).sum())
            tot += float(model(**b).loss) * n
            cnt += n
    return tot / cnt


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
    ap.add_argument("--val-limit", type=int, default=96)
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="slam-bench-"))
    if a.model == "smollm2":
        from slam.models import import_smollm2

        a.model = str(import_smollm2())
    if not a.data:
        from slam.data.synth import synth

        synth(str(work / "synth"), n_train=300, n_val=20, n_test=10, n_probe=8, seed=0)
        a.data = str(work / "synth")
    if a.model == "tiny":
        from slam.testing import save_tiny
        from slam.train_parts import read_split

        texts = [r["instruction"] + " " + r["response"] for r in read_split(a.data, "train")[:500]]
        a.model = str(save_tiny(work / "tiny", "llama", num_layers=8, texts=texts, hidden_size=64,
                                intermediate_size=256))

    base = [f"model.path={a.model}", f"data.train={a.data}", f"train.max_steps={a.steps}", f"train.lr={a.lr}",
            f"train.micro_batch_size={a.micro}", f"train.engine={a.engine}", "train.checkpoint_every=0",
            "train.val_max_examples=32"]
    load = child({"mode": "load", "model": a.model})
    runs = {}
    for method in ["slam", "full"] + ([] if a.no_two_stage else ["two-stage"]):
        extra = [f"train.layers={a.layers}"] if method == "slam" else []
        print(f"running {method} ({a.steps} steps{' per stage' if method == 'two-stage' else ''})...", flush=True)
        out = child({"mode": "train", "overrides": [*base, f"train.method={method}", *extra],
                     "storage": str(work / method)})
        run_dir = work / method / out["run_name"]
        out["step_time"] = statistics.median([h["step_time"] for h in history(run_dir)[2:]] or [float("nan")])
        ckpt = Path(json.loads((run_dir / "checkpoints" / "latest.json").read_text())["uri"])
        out["ckpt_mb"], out["delta_mb"] = dir_mb(ckpt), dir_mb(Path(out["delta_uri"]))
        out["state_mb"] = out["peak_rss_mb"] - load["peak_rss_mb"]
        out["common_val_loss"] = common_val_loss(a.model, out["delta_uri"], a.data, "alpaca", a.val_limit)
        runs[method] = out

    s, f = runs["slam"], runs["full"]
    print(f"\nmodel {a.model}, {a.steps} steps, micro-batch {a.micro}, engine {a.engine}, SLAM layers {a.layers}")
    print(f"{'':28s}{'SLAM':>14s}{'full FT':>14s}{'ratio':>9s}  goal")
    rows = [("trainable params", s["trainable"], f["trainable"], None),
            ("step time (s, median)", s["step_time"], f["step_time"], 0.75),
            ("peak RSS (MiB)", s["peak_rss_mb"], f["peak_rss_mb"], None),
            ("training-state memory (MiB)", s["state_mb"], f["state_mb"], 0.5),
            ("checkpoint (MiB)", s["ckpt_mb"], f["ckpt_mb"], 0.1),
            ("delta artifact (MiB)", s["delta_mb"], f["delta_mb"], None),
            ("val loss after training", s["common_val_loss"], f["common_val_loss"], None)]
    for name, x, y, goal in rows:
        r = x / y if y else float("nan")
        mark = "" if goal is None else (f"<= {goal}  {'OK' if r <= goal else 'MISSED'}")
        print(f"{name:28s}{x:>14,.3f}{y:>14,.3f}{r:>9.3f}  {mark}")
    if "two-stage" in runs:
        t = runs["two-stage"]
        print("\nsingle-stage SLAM vs two-stage (QAlign-style), metric = val loss on multilingual CoT val rows:")
        print(f"  SLAM      : {s['wall']:7.1f} s wall, val loss {s['common_val_loss']:.4f}")
        print(f"  two-stage : {t['wall']:7.1f} s wall, val loss {t['common_val_loss']:.4f} "
              f"({'reached' if t['common_val_loss'] <= s['common_val_loss'] else 'did NOT reach'} SLAM's loss)")
        print(f"  wall-time ratio two-stage / SLAM = {t['wall'] / s['wall']:.2f}x")
    (work / "bench.json").write_text(json.dumps(runs, indent=1, default=str))
    print(f"\nraw numbers: {work / 'bench.json'}")


if __name__ == "__main__":
    main()
