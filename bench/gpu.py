"""The paper-faithful 7B preset's training loop on a LLaMA-2-7B-shaped random model: SLAM vs full fine-tuning.

    python bench/gpu.py                        # CUDA: 7B shape, configs/metamath-7b.yaml, 3 timed steps/method
    python bench/gpu.py --steps 5 --micro 16 --accum 8 --methods slam
    python bench/gpu.py --shape tiny           # CPU smoke of the same path (tests/test_gpu_bench.py runs it)

What runs, per method (slam = the preset as is: layers 0-5, up+down, ZeRO-2, bf16, gradient checkpointing,
micro 64 x accum 2, max_length 1024; full = the same with train.method=full), each in its own process on
CUDA (so peak memory is per method): slam.train.train_local with the preset + overrides, on a random-init
model of the LLaMA-2-7B shape (32 layers, d 4096, FFN 11008, 32 heads, vocab 32000, written once in bf16
under --work) and rows that each fill max_length. One step more than measured runs (step 1 = warm-up:
allocator, DeepSpeed buckets); the loop is stopped when step steps+2 would start, so the 7B full
fine-tuning's ~80 GB optimizer checkpoint is never written. Step time = time between step starts. A method
that fails (full fine-tuning of 7B needs ~16 bytes/parameter of states on a single GPU: reduce --micro, or
run on more GPUs) is reported as failed and the other one still measured.

Printed per method: median step time, tokens/s per GPU (all rows are max_length long: no padding), peak
GPU memory (torch.cuda.max_memory_allocated), model FLOPs per token and MFU against --peak-tflops
(default: the GPU's dense bf16 peak from a small table; H100/H200 989). FLOPs (Megatron/PaLM
convention, recomputation not counted): forward 2N + 4*L*s*d per token (N = non-embedding weights incl.
lm_head, attention over s tokens); full = 3x forward; slam = forward + activation gradients from the
lowest trained layer up (= the forward again when layer 0 trains) + 2*N_trained weight gradients,
i.e. (4N + 2N_t)/6N of full's FLOPs: the step-time floor of SLAM vs full fine-tuning.
On CPU (--shape tiny): a 6-layer d=32 model, 192 tokens, micro 2 x accum 2, the same code path
(DeepSpeed ZeRO-2 on its CPU accelerator, bf16, checkpointing), both methods in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PRESET = REPO / "configs" / "metamath-7b.yaml"
SHAPES = {  # LLaMA-2-7B (meta-llama/Llama-2-7b-hf config.json) and a tiny one of the same family
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5),
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=512, max_position_embeddings=256, rms_norm_eps=1e-5),
}
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


class _Stop(Exception):
    """Raised when the step after the measured ones would start: no final validation or checkpoint."""


def make_model(d: Path, shape: str) -> Path:
    """A random-init LLaMA of `shape` (bf16 weights) + a tiny local tokenizer, as an HF dir; made once."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from slam.testing import tiny_tokenizer

    if (d / "config.json").is_file():
        return d
    cfg = LlamaConfig(**SHAPES[shape], pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):  # 7B random init is minutes on CPU, a second on the GPU
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    tmp = d.with_name(d.name + ".tmp")
    model.save_pretrained(tmp)
    tiny_tokenizer().save_pretrained(tmp)
    tmp.rename(d)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the runs below are child processes: leave them the whole GPU
    return d


def make_data(d: Path, model_dir: Path, max_length: int, rows: int) -> tuple[Path, int]:
    """`rows` alpaca rows that each encode to just under max_length tokens; (dir, tokens per row)."""
    from slam.models import load_tokenizer
    from slam.prompts import encode_example

    tok = load_tokenizer(model_dir)
    words = "Janet has 3 apples and buys 5 more. 3 + 5 = 8. The answer is 8. ".split()
    text, n = [], 0
    while True:  # grow the response until the next word would not fit
        trial = " ".join(text + [words[n % len(words)]])
        if encode_example(tok, "Count the apples.", trial, "alpaca", max_length) is None:
            break
        text.append(words[n % len(words)])
        n += 1
    row = {"lang": "en", "task": "cot", "instruction": "Count the apples.", "response": " ".join(text), "gold": 8}
    tokens = len(encode_example(tok, row["instruction"], row["response"], "alpaca", max_length)["input_ids"])
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.jsonl").write_text("".join(json.dumps({**row, "id": f"r{i}"}) + "\n" for i in range(rows)))
    (d / "val.jsonl").write_text(json.dumps({**row, "id": "v0"}) + "\n")
    return d, tokens


def flops_per_token(shape: dict, seq: int, method: str, layers: list[int], roles: list[str]) -> dict:
    d, f, L, V = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"], shape["vocab_size"]
    hd = d // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * hd
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * f  # q,o + k,v + gate,up,down
    n = L * per_layer + V * d                       # lm_head (the embedding lookup has no FLOPs)
    attn = 4 * seq * d                              # QK^T and AV per layer and token
    fwd = 2 * n + L * attn
    if method == "full":
        return {"N": n, "N_trained": n, "flops_per_token": 3 * fwd}
    n_t = len(layers) * len(roles) * d * f
    above = L - min(layers)                         # layers the activation gradient has to flow through
    act = 2 * (above * per_layer + V * d) + above * attn
    return {"N": n, "N_trained": n_t, "flops_per_token": fwd + act + 2 * n_t}


def run_method(a, method: str, model_dir: Path, data: Path, tokens_per_row: int) -> dict:
    """The preset's loop for steps+1 steps in this process; step times, tokens/s, memory, MFU."""
    import torch

    from slam.config import load_config
    from slam.train import batches, train_local

    cfg = load_config(PRESET, [
        f"model.path={model_dir}", f"data.train={data}", f"data.max_length={a.max_length}",
        f"train.method={method}", f"train.max_steps={a.steps + 2}", f"train.micro_batch_size={a.micro}",
        f"train.grad_accum={a.accum}", "train.checkpoint_every=0", "train.val_every=0", "train.report_every=0",
        "train.val_max_examples=1", f"train.deepspeed_config={REPO / 'configs/deepspeed/zero2-bf16.json'}",
        f"storage.root={a.work}/runs", f"train.run_name=gpu-bench-{method}-{time.time_ns()}", "tracking.uri="])
    starts: list[float] = []
    real = batches.micro_batches

    def timed(n, step, **kw):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        starts.append(time.perf_counter())
        if step == a.steps + 2:
            raise _Stop
        return real(n, step, **kw)

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    batches.micro_batches = timed
    try:
        train_local(cfg)
        raise RuntimeError("the loop ended without reaching the stop step")
    except _Stop:
        pass
    finally:
        batches.micro_batches = real
    steps = [b - s for s, b in zip(starts, starts[1:], strict=False)][1:]  # drop the warm-up step
    tok_step = a.micro * a.accum * tokens_per_row
    fl = flops_per_token(SHAPES[a.shape], a.max_length, method, list(cfg.train.layers or []), list(cfg.train.roles))
    med = statistics.median(steps)
    out = {"method": method, "steps_s": steps, "median_step_s": med, "tokens_per_step": tok_step,
           "tokens_per_s_per_gpu": tok_step / med, **fl, "model_tflops_per_s": fl["flops_per_token"] * tok_step / med / 1e12,
           "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
           "gradient_checkpointing": cfg.train.gradient_checkpointing, "precision": cfg.train.precision,
           "zero_stage": cfg.train.zero_stage, "engine": cfg.train.engine}
    peak = a.peak_tflops or _peak_tflops()
    out["mfu"] = out["model_tflops_per_s"] / peak if peak else None
    return out


def _peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def report(res: dict) -> None:
    print(f"\n== {res['shape']} LLaMA shape, preset {PRESET.name}: micro {res['micro']} x accum {res['accum']}, "
          f"{res['max_length']} tokens/row, {res['device']}")
    print(f"{'':10s}{'step s':>9s}{'tok/s/GPU':>11s}{'peak GiB':>10s}{'TFLOP/s':>9s}{'MFU':>7s}  FLOPs/token")
    for r in res["methods"]:
        if "error" in r:
            print(f"{r['method']:10s}failed: {r['error'][:120]}")
            continue
        mem = "—" if r["peak_gpu_mem_gib"] is None else f"{r['peak_gpu_mem_gib']:.1f}"
        mfu = "—" if r["mfu"] is None else f"{r['mfu']:.3f}"
        print(f"{r['method']:10s}{r['median_step_s']:9.3f}{r['tokens_per_s_per_gpu']:11,.0f}{mem:>10s}"
              f"{r['model_tflops_per_s']:9.2f}{mfu:>7s}  {r['flops_per_token']:.3g}")
    by = {r["method"]: r for r in res["methods"] if "error" not in r}
    if {"slam", "full"} <= set(by):
        s, f = by["slam"], by["full"]
        print(f"slam/full: step time {s['median_step_s'] / f['median_step_s']:.3f} (FLOP floor "
              f"{s['flops_per_token'] / f['flops_per_token']:.3f})"
              + (f", peak memory {s['peak_gpu_mem_gib'] / f['peak_gpu_mem_gib']:.3f}" if s["peak_gpu_mem_gib"] else ""))
    print(f"machine: {res['machine']}")


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=list(SHAPES), default="7b" if torch.cuda.is_available() else "tiny")
    ap.add_argument("--methods", default="slam,full")
    ap.add_argument("--steps", type=int, default=3, help="measured steps per method (one warm-up step more)")
    ap.add_argument("--micro", type=int, default=0, help="micro-batch (default: preset 64; tiny 2)")
    ap.add_argument("--accum", type=int, default=0, help="gradient accumulation (default: preset 2)")
    ap.add_argument("--max-length", type=int, default=0, help="tokens per row (default: preset 1024; tiny 64)")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak of one GPU (default: table)")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench-gpu"))
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # child: run this method, print JSON
    a = ap.parse_args(argv)
    tiny = a.shape == "tiny"
    a.micro, a.accum = a.micro or (2 if tiny else 64), a.accum or 2
    a.max_length = a.max_length or (192 if tiny else 1024)
    work = Path(a.work)
    model_dir = make_model(work / f"model-{a.shape}", a.shape)
    data, per_row = make_data(work / f"data-{a.shape}-{a.max_length}", model_dir, a.max_length,
                              a.micro * a.accum * (a.steps + 2))
    if a.one:
        print("RESULT " + json.dumps(run_method(a, a.one, model_dir, data, per_row)), flush=True)
        return {}
    methods = []
    for m in a.methods.split(","):
        if torch.cuda.is_available():  # one process per method: its own peak memory, nothing left over
            argv_child = [sys.executable, __file__, "--one", m, *(argv if argv is not None else sys.argv[1:])]
            print(f"{m}: running the preset loop ({a.steps} + 1 steps) in a child process", flush=True)
            r = subprocess.run(argv_child, capture_output=True, text=True, cwd=REPO)
            if r.returncode == 0 and "RESULT " in r.stdout:
                methods.append(json.loads(r.stdout.rsplit("RESULT ", 1)[1]))
            else:  # e.g. full fine-tuning of 7B out of memory on one GPU: say so, measure the other method
                err = (r.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{m}: failed (exit {r.returncode}):\n" + "\n".join(r.stderr.splitlines()[-20:]), file=sys.stderr)
                methods.append({"method": m, "error": err})
        else:
            methods.append(run_method(a, m, model_dir, data, per_row))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU x{os.cpu_count()}"
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    res = {"shape": a.shape, "micro": a.micro, "accum": a.accum, "max_length": a.max_length, "device": device,
           "methods": methods, "machine": up}
    (work / f"results-{a.shape}.json").write_text(json.dumps(res, indent=1))
    report(res)
    return res


if __name__ == "__main__":
    main()
