"""Typed, frozen configuration for every step, loaded from YAML plus `section.key=value` overrides.

    cfg = load_config("configs/smollm2-demo.yaml", overrides=["train.lr=1e-4", "train.layers=[0,1,2]"])

Defaults live here, documented once; a YAML file lists only what changes. Unknown keys and bad values
are rejected, and every problem is reported in one message (litgpt `validate_args` style).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from slam.errors import ConfigError

Role = Literal["gate", "up", "down", "attention", "full-layer", "embeddings"]
Selection = Literal["top-k", "contiguous", "bottom-k", "random-k", "top-layers"]
"""How layers are picked (slam.probe.select): top-k / contiguous use the probe's scores; bottom-k is the
paper's recipe (layers 0..k-1); random-k and top-layers are controls."""


@dataclass(frozen=True)
class ModelConfig:
    path: str = ""
    """HF model directory (or `s3://` URI of one). May hold only config.json for `slam plan`."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype when loading: auto = bf16 on GPU, fp32 on CPU."""


@dataclass(frozen=True)
class DataConfig:
    train: str = ""
    """Built SLAM training set (`slam data build`/`slam data synth` output dir or URI)."""
    langs: list[str] = field(default_factory=list)
    """Languages to use (ISO 639-1); empty = all in the data."""
    prompt: Literal["alpaca", "chat"] = "alpaca"
    """Prompt template: Alpaca (MathOctopus/QAlign/SLAM evaluation) or the model's chat template."""
    max_length: int = 1024
    """Examples longer than this (prompt + response tokens) are quarantined, not truncated."""


@dataclass(frozen=True)
class ProbeConfig:
    data: str = ""
    """Parallel questions to probe with (JSONL records, or a built/synth dataset); empty = data.train."""
    method: Literal["msd", "lape", "cosine"] = "msd"
    langs: list[str] = field(default_factory=list)
    """Languages to probe; must include `en` for msd/cosine. Empty = all in the data."""
    top_k: int = 6
    """How many layers to select (the paper lands on 6)."""
    selection: Selection = "bottom-k"
    """Which k layers train. bottom-k (default): layers 0..k-1, the paper's recipe; top-k: the k highest-scoring
    layers; contiguous: the best-scoring block of k adjacent layers; random-k / top-layers: controls (see
    slam.probe.select). The probe's own top-k choice and its stability are reported whatever trains
    (`probe_selected_layers`). bottom-k is the default on `slam study`'s evidence (README): on SmolLM2 with six
    languages the probe is stable and picks mostly the top layers, and training them gave less than half of
    bottom-k's non-English gain; no probe choice beat bottom-k on either model studied."""
    threshold: float = 0.0
    """Activation level above which a neuron "fires" on a token (paper: > 0)."""
    fire_fraction: float = 0.01
    """msd with activation=fixed: activated = fires on at least this share of a language's tokens (saturates
    for SiLU-gated models: 91-100% of neurons pass in every language on SmolLM2)."""
    activation: Literal["neuron", "layer", "fixed"] = "neuron"
    """msd: when a neuron counts as activated for a language. neuron: its activation probability is above
    its own mean over languages by activation_margin; layer: above the layer's activation_quantile of all (language, neuron)
    probabilities; fixed: p >= fire_fraction (the uncalibrated reconstruction)."""
    activation_quantile: float = 0.9
    """msd with activation=layer: the quantile bar (0.9 = the top 10%)."""
    activation_margin: float = 0.05
    """msd with activation=neuron: how far above its cross-language mean a neuron's activation probability
    must be (0.05 = 5 points of firing rate)."""
    balance_tokens: bool = True
    """Count as many tokens of every language as the shortest-tokenized one has (seeded thinning)."""
    blocks: int = 64
    """Parallel problems are counted in this many blocks (one question each with the default 64 questions):
    the unit the null shuffles and the halves split. Finer blocks make a sharper null; memory is blocks x
    languages x FFN width x layers int32 counters (SmolLM2, 6 languages: 71 MB; a 7B, 10 languages: 0.9 GB)."""
    permutations: int = 100
    """Language-label shuffles for the null (z-scores, p-values); 0 = no calibration."""
    rank_by: Literal["excess", "z", "raw"] = "excess"
    """Rank layers by the statistic minus its language-shuffled null mean (calibrated), by the z-score
    against that null, or by the raw statistic (uncalibrated)."""
    split_halves: int = 10
    """Random halves of the blocks for split-half stability (>= 5 for a meaningful mean)."""
    min_tau: float = 0.6
    """Stable when the mean split-half Kendall tau of layer scores reaches this..."""
    min_overlap: float = 0.66
    """...and the split-half and leave-one-language-out selections share this fraction of k layers (4 of 6)."""
    fallback: Literal["bottom-k", "none"] = "bottom-k"
    """When the probe is not stable, train the paper's bottom-k instead of an unstable selection."""
    seed: int = 0
    """Seeds token thinning, shuffles and halves."""
    max_questions: int = 64
    """Parallel questions per language (0 = all the data has)."""
    batch_size: int = 8
    max_length: int = 256
    """Tokens per question; longer ones are truncated (probing reads activations, not answers)."""
    lape_entropy_quantile: float = 0.01
    """lape: share of all neurons, lowest entropy over languages first, counted as language-specific."""
    lape_prob_quantile: float = 0.95
    """lape: a neuron must exceed this quantile of all activation probabilities in some language."""


@dataclass(frozen=True)
class TrainConfig:
    method: Literal["slam", "full", "two-stage"] = "slam"
    """slam: selected layers' FFNs only; full: every parameter; two-stage: QAlign-style baseline."""
    layers: list[int] | None = None
    """Layers to tune; None = take them from `probe` (the probe output's selection)."""
    probe: str = ""
    """probe.json path/URI whose selected layers to use when `layers` is None."""
    top_k: int | None = None
    """Override the probe's k: take the first k layers of its ranking."""
    selection: Selection | None = None
    """Override the probe's selection mode when re-selecting from its scores."""
    roles: list[Role] = field(default_factory=lambda: ["up", "down"])
    """FFN projections to tune (official SLAM code: up_proj + down_proj)."""
    engine: Literal["deepspeed", "torch"] = "deepspeed"
    zero_stage: int = 2
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """auto = bf16 on GPU, fp32 on CPU."""
    lr: float = 2e-5
    min_lr_ratio: float = 0.0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    epochs: float = 4.0
    max_steps: int | None = None
    """Optimizer steps; overrides epochs when set."""
    micro_batch_size: int = 4
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    chunked_loss: bool = True
    """Loss from the final hidden states on response tokens only, in chunks: the full logits are never
    materialized (less memory, same value: checked on the first batch, else the model's own loss is used)."""
    group_by_length: bool = True
    """Micro-batches of rows of similar length (seeded, still one pass over the data per epoch): far less
    padding to compute than random batches. false = plain shuffled batches."""
    max_grad_norm: float = 1.0
    seed: int = 0
    val_every: int = 0
    """Validation loss every N steps (0 = only at the end)."""
    val_tasks: list[Literal["cot", "translate"]] = field(default_factory=list)
    """Tasks of the validation rows; empty = what this (stage of the) run trains on. ["cot"] = the target,
    questions in every language with English CoT answers: comparable across methods and two-stage stages."""
    val_accuracy_limit: int = 0
    """Questions per language for a small validation accuracy (greedy generation; 0 = off)."""
    val_accuracy_every: int = 0
    """Steps between validation accuracies when val_accuracy_limit > 0 (0 = only at the end)."""
    report_every: int = 10
    """Steps between ray.train.report calls (each one costs ~0.2-2 s)."""
    checkpoint_every: int = 0
    """Steps between delta checkpoints (0 = only the final one)."""
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 1
    run_name: str = ""
    """Ray run name; empty = derived deterministically from config + data fingerprints."""
    deepspeed_config: str = ""
    """Optional DeepSpeed JSON whose keys override the generated ones."""
    val_max_examples: int = 256
    """Validation rows used for the validation loss (the first N of val.jsonl after filtering)."""


@dataclass(frozen=True)
class TuneConfig:
    k_grid: list[int] = field(default_factory=lambda: [2, 4, 6, 8])
    lr_grid: list[float] = field(default_factory=list)
    """Learning rates to try; empty = train.lr only."""
    selections: list[Selection] = field(default_factory=list)
    """Selection policies to try; empty = the probe's own (probe.json's `selection`, the one decision the probe
    step made: re-deriving it here would train top-k after a probe run with `contiguous` or `bottom-k`)."""
    search: Literal["grid", "random"] = "grid"
    num_samples: int = 1
    """grid: repeats of the whole grid; random: number of trials."""
    max_steps: int = 50
    """Reduced training budget per trial."""
    metric: Literal["val_loss", "val_accuracy", "val_accuracy_non_en"] = "val_accuracy_non_en"
    """What ranks trials: non-English validation accuracy (greedy, on held-out CoT questions; English is the
    guard below). val_loss always favours more trainable parameters, so it cannot choose k."""
    val_accuracy_limit: int = 12
    """Questions per language each trial is scored on (when train.val_accuracy_limit is 0)."""
    english_tolerance: float = 0.05
    """English guard: a trial more than this (accuracy, 0.05 = 5 points) below the best trial's English
    validation accuracy cannot win."""
    asha: bool = True
    grace_period: int = 1
    """ASHA: reports a trial gets before it may be stopped."""
    max_concurrent_trials: int = 0
    """0 = derived from available CPUs/GPUs."""
    seed: int = 0
    """Seeds the sample of search points when search=random."""
    name: str = ""


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = ""
    """MLflow tracking URI; empty = MLFLOW_TRACKING_URI, else tracking is a do-nothing stand-in."""
    experiment: str = "slam"
    registry_name: str = "slam"
    gate_margin: float = 1.0
    """Promotion gate: no language may drop more than this many accuracy points vs the champion."""
    retries: int = 3
    """Bounded retries for MLflow calls that need an answer (registration) before a clear error."""
    outage_wait_s: float = 600.0
    """Training/evaluation never wait for MLflow: their logs are buffered while it is unreachable. At
    the end of a run, how long to wait for it to come back before giving up on the buffered logs."""
    parent: str = ""
    """Run key (`slam.run_key`) of the run that runs without an explicit parent nest under, found or
    created: the pipeline run's `pipeline/<KFP run id>`, or a Tune search's `tune/<name>` for its trials."""


@dataclass(frozen=True)
class StorageConfig:
    root: str = "runs"
    """Where outputs land: a local dir or an `s3://bucket/prefix` URI."""


@dataclass(frozen=True)
class SlamConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def replace(self, **sections: dict[str, Any]) -> SlamConfig:
        """Copy with some fields changed: `cfg.replace(train={"lr": 1e-4})` (validated)."""
        data = to_dict(self)
        for name, changes in sections.items():
            data[name] = {**data[name], **changes}
        return from_dict(SlamConfig, data)


# --------------------------------------------------------------------------------------------------
# Loading and validation


def _check(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    """Check `value` against type annotation `tp`; return the (converted) value or append a problem."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        sub: list[str] = []
        for a in inner:
            sub = []
            out = _check(a, value, where, sub)
            if not sub:
                return out
        problems.extend(sub)
        return value
    if origin is Literal:
        if value not in args:
            problems.append(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) and args and args[0] is int:
            return parse_int_list(value, where, problems)
        if isinstance(value, str) and args and args[0] is not int:
            value = split_list(value)
        if not isinstance(value, (list, tuple)):
            problems.append(f"{where}: expected a list, got {value!r}")
            return value
        return [_check(args[0] if args else Any, v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
            return tp()
        return _from_dict(tp, value, where, problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {value!r}")
        return value
    return value


def split_list(text: str | None, what: str = "") -> list[str]:
    """'en, de,,fr' -> ['en', 'de', 'fr'] (comma lists on the CLI, in overrides and pipeline parameters).
    With `what`, a duplicate entry is an error naming it."""
    items = [v.strip() for v in str(text or "").split(",") if v.strip()]
    if what and len(set(items)) != len(items):
        raise ConfigError(f"{what}: duplicate entries in {text!r}")
    return items


def parse_key_values(items: list[str] | None, what: str = "setting",
                     problems: list[str] | None = None) -> dict[str, str]:
    """['a=1', 'b.c=x=y'] -> {'a': '1', 'b.c': 'x=y'}: the one `key=value` parser (overrides, pipeline
    parameters, --env, --node-selector, column maps). Malformed items are appended to `problems`, or all
    raised at once."""
    out: dict[str, str] = {}
    errs = []
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            errs.append(f"{what} {item!r}: expected key=value")
            continue
        out[key.strip()] = value
    if problems is not None:
        problems.extend(errs)
    elif errs:
        raise ConfigError("; ".join(errs))
    return out


def split_overrides(text: str) -> list[str]:
    """`section.key=value` overrides in one string, separated by newlines or ';' (a pipeline parameter)."""
    return [x.strip() for x in str(text or "").replace(";", "\n").splitlines() if x.strip()]


MAX_INDEX = 1024
"""Layer indices and counts stop here: no model has more layers, and a range like 1-1000000 is a typo."""


def parse_int_list(text: str, where: str = "layers", problems: list[str] | None = None) -> list[int]:
    """'0-5' -> [0..5]; '0,2,4' -> [0,2,4]; '0-2,7' -> [0,1,2,7]. Problems are appended or raised."""
    out: list[int] = []
    errs: list[str] = []
    for part in str(text).replace(" ", "").strip("[]").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    errs.append(f"{where}: range {part!r} runs backwards")
                elif hi - lo >= MAX_INDEX:
                    errs.append(f"{where}: range {part!r} has {hi - lo + 1} values (at most {MAX_INDEX})")
                    continue
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            errs.append(f"{where}: {part!r} is not a layer index or range like 0-5")
    if problems is None and errs:
        raise ConfigError("; ".join(errs))
    if problems is not None:
        problems.extend(errs)
    return out


_NOT_HERE = {"eval": "evaluation is not set in this config: use `slam evaluate` flags (--task, --langs, --limit, "
                      "--max-new-tokens) or the pipeline's parameters (eval_tasks, eval_limit, eval_max_new_tokens)"}
"""Keys users may expect here (an earlier `eval:` section was accepted but read by nothing), and where they live."""


def _from_dict(cls: type, data: dict[str, Any], where: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            why = _NOT_HERE.get(f"{where}.{key}".lstrip("."), f"unknown key (valid: {', '.join(sorted(names))})")
            problems.append(f"{where}.{key}: {why}".lstrip("."))
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _check(hints[f.name], data[f.name], f"{where}.{f.name}".lstrip("."), problems)
    try:
        return cls(**kwargs)
    except TypeError as e:  # only reachable on a programming error in a dataclass
        problems.append(f"{where}: {e}")
        return cls()


def probe_problems(pc: ProbeConfig, prefix: str = "") -> list[str]:
    """The probe's calibration settings that cannot work (shared by the config loader and run_probes)."""
    p = []
    if not 0 <= pc.activation_quantile < 1:
        p.append(f"{prefix}activation_quantile: must be in [0, 1), got {pc.activation_quantile}")
    for name in ("blocks", "permutations", "split_halves"):
        if getattr(pc, name) < (1 if name == "blocks" else 0):
            p.append(f"{prefix}{name}: must be >= {1 if name == 'blocks' else 0}, got {getattr(pc, name)}")
    if not 0 <= pc.min_overlap <= 1:
        p.append(f"{prefix}min_overlap: must be in [0, 1], got {pc.min_overlap}")
    return p


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    problems: list[str] = []
    obj = _from_dict(cls, data, "", problems)
    if not problems and cls is SlamConfig:
        from slam.config_checks import semantic_problems

        problems = semantic_problems(obj)
    if problems:
        raise ConfigError(f"invalid config: {'; '.join(problems)}")
    return obj


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides (value parsed as YAML) to a nested dict."""
    problems = []
    for key, raw in parse_key_values(overrides, "override").items():
        item = f"{key}={raw}"
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                problems.append(f"override {item!r}: {p} is not a section")
                break
        else:
            try:
                node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
            except yaml.YAMLError:
                node[parts[-1]] = raw
    if problems:
        raise ConfigError("; ".join(problems))
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SlamConfig:
    """Load a YAML config (sections as in `SlamConfig`), apply overrides, validate everything once."""
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        remote = str(path).startswith("s3://")  # a RayJob's config travels next to its outputs
        if not remote and not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            if remote:
                from slam import storage

                loaded = yaml.safe_load(storage.read_text(str(path)))
            else:
                loaded = yaml.safe_load(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}: save the file as UTF-8)") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level")
        data = loaded
    data = apply_overrides(data, overrides or [])
    return from_dict(SlamConfig, data)


def dump_config(cfg: SlamConfig) -> str:
    """The YAML slam writes to files (a RayJob's config on S3): a tracking URI's user:password@ is left out,
    the pods get MLflow credentials from the slam-mlflow Secret (MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    from slam.redact import strip_userinfo

    data = to_dict(cfg)
    data["tracking"]["uri"] = strip_userinfo(data["tracking"]["uri"])
    return yaml.safe_dump(data, sort_keys=False)
