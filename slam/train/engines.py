"""Where the training math runs: DeepSpeed (ZeRO, the default) or plain torch/DDP behind the same calls.

    engine = DeepSpeedEngine(model, optimizer, scheduler, ds_config=deepspeed_config(cfg.train, world, "fp32"))
    loss = engine.forward(batch); engine.backward(loss); engine.step(); engine.save(ckpt_dir, rank)

Also the process group both engines share (`init_distributed`, `all_sum`, `all_mean`) and the RNG state a
checkpoint carries. One code path on GPU (NCCL, bf16) and CPU (gloo, fp32 or bf16 on DeepSpeed's CPU
accelerator).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from typing import Any

import torch

from slam import storage
from slam.errors import SlamError
from slam.train.loss import causal_lm_loss


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

    n = dist.get_world_size() if dist.is_initialized() else 1
    return [v / n for v in all_sum(values)]


def all_sum(values: list[float]) -> list[float]:
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [float(v) for v in values]
    # NCCL reduces CUDA tensors only; gloo CPU tensors
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def set_rng(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


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
        self.chunked_loss = False

    def forward(self, batch: dict) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return causal_lm_loss(self.model, self.module, batch, self.chunked_loss)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accum).backward()

    def step(self) -> None:
        self._micro += 1
        if self._micro % self.accum:
            return
        params = [p for p in self.module.parameters() if p.requires_grad]
        # inf = measure without clipping: the grad norm is a live training metric either way
        self._grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm or float("inf")))
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def grad_norm(self) -> float | None:
        """Global norm of the trainable gradients at the last optimizer step (before clipping)."""
        return getattr(self, "_grad_norm", None)

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
        self.chunked_loss = False

    def forward(self, batch: dict) -> torch.Tensor:
        return causal_lm_loss(self.engine, self.module, batch, self.chunked_loss)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by gradient_accumulation_steps itself

    def step(self) -> None:
        self.engine.step()  # optimizer + scheduler only at accumulation boundaries

    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def grad_norm(self) -> float | None:
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

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
