"""Building blocks of `slam.train.train_loop`, kept out of it so the loop reads top to bottom.

- `Engine`: DeepSpeed (ZeRO, the default) or plain torch/DDP behind the same five calls.
- `LocalSession`: checkpoints and metrics when no Ray is around (`slam train --no-ray`, tests, benches);
  `slam.distributed.train.RaySession` is its Ray twin.
- data helpers: read a built dataset split, tokenize with response-only labels, and the deterministic
  step -> micro-batch schedule that makes resuming exact (the batch of step s never depends on history).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from slam import storage
from slam.errors import SlamError

CKPT_STATE = "trainer_state.json"


# --------------------------------------------------------------------------------------------------
# Process group and environment


def default_extensions_dir() -> str:
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        return str(root / ".cache" / "torch_extensions")
    return str(Path.home() / ".cache" / "slam" / "torch_extensions")


def init_distributed() -> tuple[int, int]:
    """(rank, world): reuse the group Ray/torchrun made, or make a 1-process gloo group (DeepSpeed needs one)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        if "MASTER_PORT" not in os.environ:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
            os.environ.setdefault(k, v)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def all_mean(values: list[float]) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.tolist()


def all_sum(values: list[float]) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def set_rng(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


# --------------------------------------------------------------------------------------------------
# Data


def read_split(uri_dir: str, split: str) -> list[dict[str, Any]]:
    """Rows of `<dir>/<split>.jsonl` of a built dataset (shared interface: id, lang, task, instruction, response)."""
    uri = storage.join(uri_dir, f"{split}.jsonl")
    if not storage.exists(uri):
        raise SlamError(f"training data: {uri} not found (expected a `slam data build`/`slam data synth` output dir)")
    rows = []
    for i, line in enumerate(storage.read_text(uri).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise SlamError(f"{uri} line {i}: not valid JSON") from None
    return rows


def select_rows(rows: list[dict], tasks: list[str] | None, langs: list[str] | None) -> list[dict]:
    return [r for r in rows if (not tasks or r.get("task") in tasks) and (not langs or r.get("lang") in langs)]


def encode_rows(tok: Any, rows: list[dict], template: str, max_length: int) -> tuple[list[dict], list[dict]]:
    """(encoded examples, quarantined rows): a row too long for max_length is set aside and counted."""
    from slam.prompts import encode_example

    out, bad = [], []
    for r in rows:
        ex = encode_example(tok, r["instruction"], r["response"], template=template, max_length=max_length)
        if ex is None:
            bad.append({"id": r.get("id"), "reason": f"longer than max_length={max_length} tokens"})
        else:
            out.append(ex)
    return out, bad


def micro_batches(n_examples: int, step: int, *, seed: int, micro: int, accum: int, rank: int,
                  world: int) -> list[list[int]]:
    """Example indices of this rank's micro-batches for optimizer step `step` (1-based).

    The data is an endless stream of seeded per-epoch permutations; step s takes the s-th global batch
    of micro*accum*world examples from it. A pure function of the step, so a resumed run sees exactly the
    batches it would have seen, and no example is counted twice.
    """
    g = micro * accum * world
    start = (step - 1) * g

    def at(pos: int) -> int:
        epoch, i = divmod(pos, n_examples)
        perm = _perm(n_examples, seed, epoch)
        return perm[i]

    out = []
    for a in range(accum):
        base = start + (a * world + rank) * micro
        out.append([at(base + j) for j in range(micro)])
    return out


_perm_cache: dict[tuple[int, int, int], list[int]] = {}


def _perm(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _perm_cache:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        _perm_cache[key] = torch.randperm(n, generator=g).tolist()
    return _perm_cache[key]


def total_steps(n_examples: int, epochs: float, max_steps: int | None, global_batch: int) -> int:
    if max_steps:
        return max_steps
    return max(1, math.ceil(epochs * n_examples / global_batch))


def cosine_lambda(total: int, warmup_ratio: float, min_ratio: float):
    warmup = int(total * warmup_ratio)

    def f(i: int) -> float:  # i = optimizer steps taken so far
        if i < warmup:
            return (i + 1) / (warmup + 1)
        progress = (i - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


# --------------------------------------------------------------------------------------------------
# Engines


class TorchEngine:
    """Plain torch (DDP when world > 1): the debugging path; same calls as DeepSpeedEngine."""

    def __init__(self, model, optimizer, scheduler, *, accum: int, max_grad_norm: float, world: int,
                 precision: str, device: torch.device):
        self.module = model
        self.model = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.opt, self.sched, self.accum, self.max_grad_norm = optimizer, scheduler, accum, max_grad_norm
        self.autocast = precision == "bf16"
        self.device = device
        self._micro = 0

    def forward(self, batch: dict) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.model(**batch).loss

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accum).backward()

    def step(self) -> None:
        self._micro += 1
        if self._micro % self.accum:
            return
        params = [p for p in self.module.parameters() if p.requires_grad]
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def save(self, d: Path, rank: int) -> None:
        if rank == 0:
            torch.save({"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}, d / "optim.pt")

    def load(self, d: Path) -> None:
        state = torch.load(d / "optim.pt", map_location=self.device, weights_only=False)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])


class DeepSpeedEngine(TorchEngine):
    """deepspeed.initialize with the client torch AdamW (so no fused op is ever compiled)."""

    def __init__(self, model, optimizer, scheduler, *, ds_config: dict):
        import deepspeed

        self.engine, self.opt, _, self.sched = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config,
            dist_init_required=False)
        self.module = self.engine.module
        self.model = self.engine

    def forward(self, batch: dict) -> torch.Tensor:
        return self.engine(**batch).loss

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by gradient_accumulation_steps itself

    def step(self) -> None:
        self.engine.step()  # optimizer + scheduler only at accumulation boundaries

    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def save(self, d: Path, rank: int) -> None:
        # every rank writes its ZeRO partition of the optimizer; frozen weights stay out (that is the point)
        self.engine.save_checkpoint(str(d / "ds"), tag="ckpt", save_latest=False, exclude_frozen_parameters=True)
        # exclude_frozen_parameters misses tied weights (lm_head = embeddings: 113 MB on SmolLM2), which
        # state_dict() lists but named_parameters() does not; keep only the trained tensors
        f = d / "ds" / "ckpt" / "mp_rank_00_model_states.pt"
        if rank == 0 and f.is_file():
            state = torch.load(f, map_location="cpu", weights_only=False)
            trained = {n for n, p in self.module.named_parameters() if p.requires_grad}
            state["module"] = {k: v for k, v in state["module"].items() if k in trained}
            torch.save(state, f)

    def load(self, d: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(d / "ds"), tag="ckpt", load_module_strict=False,
                                              load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            raise SlamError(f"checkpoint {d} has no DeepSpeed state for this world size / engine")


def deepspeed_config(t: Any, world: int, precision: str, overrides_uri: str = "") -> dict:
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": t.micro_batch_size * t.grad_accum * world,
        "gradient_clipping": t.max_grad_norm,
        "zero_optimization": {"stage": t.zero_stage, "overlap_comm": False, "contiguous_gradients": True,
                              "reduce_bucket_size": 5e8, "allgather_bucket_size": 5e8},
        "bf16": {"enabled": precision == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if overrides_uri:
        user = storage.read_json(overrides_uri)
        for k, v in user.items():
            if v == "auto" or k.startswith("_"):  # HF-style placeholders keep ours; _comment is ours
                continue
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **{kk: vv for kk, vv in v.items() if vv != "auto"}}
            else:
                cfg[k] = v
    return cfg


# --------------------------------------------------------------------------------------------------
# Sessions: where checkpoints and reports go


class LocalSession:
    """No Ray: checkpoints are published to `<run_dir>/checkpoints/step-N`; `latest.json` points at the newest.

    Only rank 0 writes (the torch engine; DeepSpeed under torchrun would need shared local storage).
    """

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.reports: list[dict] = []

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[Path | None]:
        pointer = storage.join(self.run_dir, "checkpoints", "latest.json")
        if not storage.exists(pointer):
            yield None
            return
        with storage.local_copy(storage.read_json(pointer)["uri"], require_success=True) as d:
            yield Path(d)

    def report(self, metrics: dict, checkpoint: Path | None = None, rank: int = 0) -> None:
        self.reports.append(dict(metrics))
        if checkpoint is not None and rank == 0:
            uri = storage.join(self.run_dir, "checkpoints", f"step-{metrics['step']:07d}")
            storage.publish_dir(checkpoint, uri)
            storage.write_json(storage.join(self.run_dir, "checkpoints", "latest.json"),
                               {"uri": uri, "step": metrics["step"]})
