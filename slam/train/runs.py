"""A training run's identity and inputs, decided once before any worker starts.

    cfg = resolve_layers(cfg)              # train.layers from the probe when not given: the one layer decision
    check_inputs(cfg)                      # everything checkable before Ray starts, in one message
    name = run_name_for(cfg)               # slam-<method>-<hash of config + data>: re-runs resume
    delta_uri(root, cfg)                   # where the run's final delta lands (both launchers use this)

Workers never re-derive these: they get a config whose train.layers is already set, and the launcher
that started them knows where the delta will be without asking them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slam import storage
from slam.config import SlamConfig, to_dict
from slam.errors import SlamError

# Settings that change where or how fast a run executes, not what it computes: left out of its name.
_PLACEMENT = ("num_workers", "use_gpu", "cpus_per_worker", "max_failures", "report_every", "run_name")


def run_name_for(cfg: SlamConfig) -> str:
    """`slam-<method>-<hash>` of the config (minus where it runs) and the data's fingerprint."""
    if cfg.train.run_name:
        return cfg.train.run_name
    d = to_dict(cfg)
    for k in _PLACEMENT:
        d["train"].pop(k, None)
    d.pop("storage", None)
    d.pop("tracking", None)
    h = storage.fingerprint_bytes(json.dumps(d, sort_keys=True).encode(), data_fingerprint(cfg.data.train).encode())
    return f"slam-{cfg.train.method}-{h[:10]}"


def stages_for(cfg: SlamConfig) -> list[dict[str, Any]]:
    """One stage ({}) for slam/full; the QAlign-style two-stage baseline: translate, then English CoT."""
    if cfg.train.method != "two-stage":
        return [{}]
    return [{"name": "stage1", "method": "full", "tasks": ["translate"], "langs": None},
            {"name": "stage2", "method": "full", "tasks": ["cot"], "langs": ["en"]}]


def stage_run_name(name: str, stage: dict[str, Any]) -> str:
    return f"{name}-{stage['name']}" if stage else name


def delta_uri(root: str, cfg: SlamConfig) -> str:
    """The final delta of the run `cfg` describes under storage `root` (the last stage's, for two-stage)."""
    return storage.join(storage.absolute(root), stage_run_name(run_name_for(cfg), stages_for(cfg)[-1]), "delta")


def resolve_layers(cfg: SlamConfig) -> SlamConfig:
    """`cfg` with train.layers set: as given, or the probe report's selection (re-selected for
    train.top_k / train.selection when set). Methods that train every layer are returned unchanged."""
    t = cfg.train
    if t.method != "slam" or t.layers is not None:
        return cfg
    if not t.probe:
        raise SlamError("train.method=slam needs train.layers (e.g. 0-5) or train.probe (a probe.json)")
    from slam.probe.select import read_report

    report = read_report(t.probe)
    if t.top_k is None and t.selection is None:
        layers = list(report["selected_layers"])
    else:
        from slam.probe import select_layers

        layers = select_layers(report, t.top_k or report.get("top_k", len(report["selected_layers"])),
                               t.selection or report.get("selection", "top-k"))
    return cfg.replace(train={"layers": layers})


def check_inputs(cfg: SlamConfig) -> None:
    """Everything we can check before starting Ray, reported at once."""
    from slam.models import check_model_uri, is_local

    problems = []
    try:
        check_model_uri(cfg.model.path)
        if is_local(cfg.model.path) and not (Path(cfg.model.path) / "config.json").is_file():
            problems.append(f"model.path {cfg.model.path} is not a Hugging Face model dir")
    except SlamError as e:
        problems.append(f"model.path: {e}")
    if not cfg.data.train:
        problems.append("data.train is empty (a `slam data build`/`slam data synth` output dir)")
    elif not storage.exists(storage.join(cfg.data.train, "train.jsonl")):
        problems.append(f"data.train {cfg.data.train} has no train.jsonl")
    if cfg.train.method == "slam" and cfg.train.layers is None:
        problems.append("train.layers is not set (resolve it from the probe first: slam.train.resolve_layers)")
    if problems:
        raise SlamError("cannot train: " + "; ".join(problems))


def data_fingerprint(uri_dir: str) -> str:
    """Hash of the built dataset's train/val files (what the deterministic run name is derived from)."""
    chunks = [storage.read_bytes(storage.join(uri_dir, f"{s}.jsonl")) for s in ("train", "val")
              if storage.exists(storage.join(uri_dir, f"{s}.jsonl"))]
    return storage.fingerprint_bytes(*chunks)
