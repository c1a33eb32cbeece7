"""Building blocks of `slam.train.train_loop`, kept out of it so the loop reads top to bottom.

- `Engine`: DeepSpeed (ZeRO, the default) or plain torch/DDP behind the same five calls.
- `causal_lm_loss`: the response-only loss from the final hidden states, in chunks, so the
  (batch x length x vocabulary) logits are never materialized.
- `LocalSession`: checkpoints and metrics when no Ray is around (`slam train --no-ray`, tests, benches);
  `slam.distributed.train.RaySession` is its Ray twin.
- data helpers: read a built dataset split, tokenize with response-only labels, and the deterministic
  step -> micro-batch schedule that makes resuming exact (the batch of step s never depends on history).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
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
LOSS_CHUNK = 512
"""Response tokens per logits chunk: peak loss memory ~ 3 x LOSS_CHUNK x vocab x 4 bytes (300 MB at 49k)."""

log = logging.getLogger(__name__)


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
# Loss
#
# HF's causal-LM loss materializes logits for every position (prompt and padding included) and keeps
# their log-softmax for backward: on SmolLM2 (49k vocabulary, 576 hidden) that, not the weights or the
# optimizer, sets the peak memory of both SLAM and full fine-tuning. We ask the model for its final
# hidden states (and one position of logits), keep the response positions, and compute the loss in
# checkpointed chunks: one chunk of logits is alive at a time, in forward and in backward.


def chunked_loss_unsupported(module: torch.nn.Module) -> str | None:
    """Why the chunked loss would differ from the model's own for this model (None: it would not)."""
    cfg = getattr(module, "config", None)
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
        v = getattr(cfg, attr, None)
        if v not in (None, 1, 1.0):
            return f"config.{attr}={v} post-processes the logits"
    if "logits_to_keep" not in inspect.signature(module.forward).parameters:
        return "its forward() has no logits_to_keep"
    if module.get_output_embeddings() is None:
        return "it has no output embeddings"
    return None


def _ce_sum(head: torch.nn.Module, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(h).float(), y, reduction="sum")


def causal_lm_loss(model: Any, module: torch.nn.Module, batch: dict, chunked: bool) -> torch.Tensor:
    """Mean next-token loss over labelled (response) tokens; `model` may be a DDP/DeepSpeed wrapper of `module`."""
    if not chunked:
        return model(**batch).loss
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
                logits_to_keep=1)
    y = batch["labels"][:, 1:]
    keep = y != -100
    h, y = out.hidden_states[-1][:, :-1][keep], y[keep]
    head = module.get_output_embeddings()
    total = out.logits.float().sum() * 0.0  # keeps the graph connected even for a batch without labels
    for i in range(0, len(y), LOSS_CHUNK):
        if torch.is_grad_enabled():
            total = total + torch.utils.checkpoint.checkpoint(_ce_sum, head, h[i:i + LOSS_CHUNK], y[i:i + LOSS_CHUNK],
                                                              use_reentrant=False)
        else:
            total = total + _ce_sum(head, h[i:i + LOSS_CHUNK], y[i:i + LOSS_CHUNK])
    return total / max(len(y), 1)


def pick_chunked_loss(module: torch.nn.Module, batch: dict, precision: str, zero_stage: int = 0) -> bool:
    """Use the chunked loss when the model allows it and it equals the model's own loss on a real batch.

    Every rank checks the same batch with the same weights; the answer is agreed on (all ranks or none).
    """
    why = chunked_loss_unsupported(module)
    if zero_stage == 3:  # ZeRO-3 gathers weights only inside the engine's forward; the head is used outside it
        why = "ZeRO stage 3 partitions the output embeddings"
    if why is None:
        was_training = module.training
        module.eval()  # dropout would make the two losses differ
        with torch.no_grad(), torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16,
                                             enabled=precision == "bf16"):
            ref = float(module(**batch).loss)
            got = float(causal_lm_loss(module, module, batch, chunked=True))
        module.train(was_training)
        if not math.isclose(ref, got, rel_tol=2e-2 if precision == "bf16" else 1e-4):
            why = f"it gave {got:.5f} where the model's own loss is {ref:.5f}"
    (agreed,) = all_sum([0.0 if why is None else 1.0])
    if agreed == 0:
        log.info("loss: response tokens only, in %d-token logits chunks (checked against the model's own)", LOSS_CHUNK)
        return True
    log.warning("loss: the model's own (full logits), not the chunked one: %s", why or "another rank disagreed")
    return False


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
        self.chunked_loss = False

    def forward(self, batch: dict) -> torch.Tensor:
        return causal_lm_loss(self.engine, self.module, batch, self.chunked_loss)

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
