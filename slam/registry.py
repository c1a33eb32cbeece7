"""Model registry: log a SLAM delta as an MLflow pyfunc, register a version, gate the `champion` alias.

    slam register --delta runs/train/delta --eval runs/eval/eval.json --name slam-smollm2
    result = register_delta(cfg.tracking, "runs/train/delta", "runs/eval/eval.json", name="slam-smollm2")
    model = mlflow.pyfunc.load_model("models:/slam-smollm2@champion"); model.predict(["Wie viel ist 3 + 5?"])

The registered artifact is the delta dir (the tuned FFN tensors + manifest.json, a few % of the model);
the pyfunc loads the base model named in the manifest (or `--base`) plus the delta and generates.
Promotion gate: `champion` moves only when the candidate's average non-English accuracy beats the
champion's and English drops by at most `tracking.english_tolerance` points; otherwise the version gets
`challenger` and the message says why. Re-registering the same delta (same fingerprint) creates no
second version. Aliases, not stages.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slam import storage
from slam.config import TrackingConfig
from slam.delta import fingerprint as delta_fingerprint
from slam.delta import read_manifest
from slam.errors import SlamError
from slam.tracking import MlflowTracker, get_tracker, pipeline_tags

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
FINGERPRINT_TAG = "slam.delta_fingerprint"
# Installed by whoever serves the model; torchvision is deliberately absent (MLflow's default adds it).
PIP_REQUIREMENTS = ["torch", "transformers", "safetensors", "accelerate"]


@dataclass(frozen=True)
class Scores:
    """The accuracies the gate compares (fractions 0..1; english None when not evaluated)."""

    average_non_en: float
    english: float | None


@dataclass(frozen=True)
class RegisterResult:
    name: str
    version: str
    alias: str
    promoted: bool
    created: bool
    reason: str
    run_id: str
    model_uri: str

    def to_dict(self) -> dict:
        return asdict(self)


def gate(candidate: Scores, champion: Scores | None, english_tolerance: float = 1.0) -> tuple[bool, str]:
    """(promote?, why). Tolerance is in accuracy points (1.0 = one percentage point)."""
    if champion is None:
        return True, "no champion yet"
    cand, champ = candidate.average_non_en * 100, champion.average_non_en * 100
    if cand <= champ:
        return False, (f"average non-English accuracy {cand:.1f} does not beat the champion's {champ:.1f}")
    if candidate.english is not None and champion.english is not None:
        drop = (champion.english - candidate.english) * 100
        if drop > english_tolerance:
            return False, (f"English accuracy drops {drop:.1f} points ({champion.english * 100:.1f} -> "
                           f"{candidate.english * 100:.1f}), more than the {english_tolerance:g}-point tolerance")
    return True, f"average non-English accuracy {cand:.1f} beats the champion's {champ:.1f}"


def scores_from_eval(report: dict) -> Scores:
    """Scores from an eval.json (`slam.evaluate` format); average_non_en recomputed when absent."""
    from slam.evaluate import check_report

    per = check_report(report)["per_lang"]
    non_en = report.get("average_non_en")
    if non_en is None:
        accs = [v["accuracy"] for k, v in per.items() if k != "en"]
        if not accs:
            raise SlamError("eval report has no non-English language: the promotion gate needs one")
        non_en = sum(accs) / len(accs)
    english = report.get("english")
    if english is None and "en" in per:
        english = per["en"]["accuracy"]
    return Scores(float(non_en), None if english is None else float(english))


def _first(d: dict, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if d.get(k) not in (None, ""):
            return d[k]
    return default


def _version_tags(manifest: dict, report: dict, scores: Scores, fingerprint: str, base: str) -> dict[str, str]:
    layers = _first(manifest, "layers", default=[])
    tags = {
        FINGERPRINT_TAG: fingerprint,
        "slam.base_model": base,
        "slam.layers": ",".join(str(i) for i in layers),
        "slam.k": str(len(layers)),
        "slam.roles": ",".join(_first(manifest, "roles", default=[])),
        "slam.languages": ",".join(sorted(report.get("per_lang", {}))),
        "slam.data_fingerprint": str(_first(manifest, "data_fingerprint", default="")),
        "slam.average_non_en": f"{scores.average_non_en:.6f}",
        "slam.english": "" if scores.english is None else f"{scores.english:.6f}",
        "slam.average": f"{float(report.get('average', 0.0)):.6f}",
    }
    tags.update({f"acc_{lang}": f"{v['accuracy']:.6f}" for lang, v in report.get("per_lang", {}).items()})
    tags.update(pipeline_tags())
    return {k: v for k, v in tags.items() if v != ""}


def _scores_from_tags(tags: dict[str, str]) -> Scores | None:
    if "slam.average_non_en" not in tags:
        return None
    en = tags.get("slam.english")
    return Scores(float(tags["slam.average_non_en"]), float(en) if en else None)


def _save_pyfunc(delta_dir: Path, out: Path, base: str, template: str) -> None:
    import mlflow.pyfunc

    from slam.serving import SlamDeltaModel

    mlflow.pyfunc.save_model(
        path=str(out), python_model=SlamDeltaModel(), artifacts={"delta": str(delta_dir)},
        model_config={"base": base, "template": template},
        code_paths=[str(Path(__file__).resolve().parent)],  # slam travels with the model
        pip_requirements=PIP_REQUIREMENTS,
    )


def _save_merged(base: str, delta_dir: Path, out: Path) -> None:
    import mlflow.transformers

    from slam.delta import merge
    from slam.models import load_model_and_tokenizer

    merged = out.parent / "merged-hf"
    merge(base, str(delta_dir), str(merged))
    # Components, not the checkpoint path: MLflow 3.17's path mode breaks on transformers 5 (check_task
    # returns the pipeline class as a string).
    model, tok = load_model_and_tokenizer(merged, dtype="float32", device="cpu")
    mlflow.transformers.save_model(transformers_model={"model": model, "tokenizer": tok}, path=str(out),
                                   task="text-generation", pip_requirements=PIP_REQUIREMENTS)


def _champion(tracker: MlflowTracker, name: str):
    from mlflow.exceptions import MlflowException

    def get():
        try:
            return tracker.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    return tracker._call("get champion", get)


def _ensure_registered_model(tracker: MlflowTracker, name: str) -> None:
    from mlflow.exceptions import MlflowException

    def ensure():
        try:
            tracker.client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            tracker.client.create_registered_model(name, tags={"slam.kind": "slam-delta"},
                                                   description="SLAM deltas (selected FFN layers) over a base LLM")

    tracker._call("create registered model", ensure)


def register_delta(tracking: TrackingConfig, delta_uri: str, eval_uri: str, *, name: str = "",
                   base: str = "", merged: bool = False, template: str = "alpaca",
                   parent_run_id: str | None = None) -> RegisterResult:
    """Log + register the delta (idempotent by fingerprint) and apply the promotion gate."""
    name = name or tracking.registry_name
    tracker = get_tracker(tracking)
    if not isinstance(tracker, MlflowTracker):
        raise SlamError("slam register needs an MLflow tracking URI (tracking.uri or MLFLOW_TRACKING_URI)")
    report = storage.read_json(eval_uri)
    scores = scores_from_eval(report)
    with storage.local_copy(delta_uri) as delta_dir:
        manifest = read_manifest(delta_dir)
        mb = manifest.get("base")
        base = base or str((mb.get("path") if isinstance(mb, dict) else mb) or "")
        if not base:
            raise SlamError(f"{delta_uri}/manifest.json names no base model: pass --base PATH")
        fp = delta_fingerprint(delta_dir)
        _ensure_registered_model(tracker, name)
        existing = tracker._call("search versions", tracker.client.search_model_versions,
                                 f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fp}'")
        if existing:
            v = existing[0]
            champ = _champion(tracker, name)
            is_champ = champ is not None and champ.version == v.version
            alias = CHAMPION if is_champ else CHALLENGER
            reason = f"delta {fp} is already version {v.version} of {name}; nothing registered"
            log.info(reason)
            return RegisterResult(name, str(v.version), alias, is_champ, False, reason, v.run_id or "",
                                  f"models:/{name}/{v.version}")
        tags = _version_tags(manifest, report, scores, fp, base)
        with tracker.run(f"register-{name}", key=f"register/{name}/{fp}", parent_run_id=parent_run_id,
                         tags={"slam.step": "register"}) as run:
            run.log_params({"base_model": base, "layers": tags.get("slam.layers", ""), "delta_uri": delta_uri,
                            "registry_name": name})
            run.log_metrics({k: float(v) for k, v in tags.items() if k.startswith("acc_")}
                            | {"average_non_en": scores.average_non_en}
                            | ({"english": scores.english} if scores.english is not None else {}))
            with tempfile.TemporaryDirectory(prefix="slam-register-") as tmp:
                _save_pyfunc(delta_dir, Path(tmp) / "model", base, template)
                run.log_artifact(Path(tmp) / "model", "model")
                if merged:
                    _save_merged(base, delta_dir, Path(tmp) / "merged")
                    run.log_artifact(Path(tmp) / "merged", "merged")
                    tags["slam.merged_uri"] = f"runs:/{run.id}/merged"
            source = f"runs:/{run.id}/model"
            mv = tracker._call("create model version", tracker.client.create_model_version, name, source,
                               run_id=run.id, tags=tags, description=f"SLAM delta {fp} over {base}")
            champ = _champion(tracker, name)
            champ_scores = _scores_from_tags(dict(champ.tags)) if champ is not None else None
            promote, reason = gate(scores, champ_scores, tracking.english_tolerance)
            alias = CHAMPION if promote else CHALLENGER
            tracker._call("set alias", tracker.client.set_registered_model_alias, name, alias, mv.version)
            tracker._call("tag version", tracker.client.set_model_version_tag, name, mv.version, "slam.gate",
                          f"{alias}: {reason}")
            run.set_tags({"slam.registered_version": mv.version, "slam.gate": f"{alias}: {reason}"})
    msg = (f"{name} version {mv.version} is the new {CHAMPION}: {reason}" if promote else
           f"{name} version {mv.version} stays {CHALLENGER}: {reason}")
    log.info(msg)
    return RegisterResult(name, str(mv.version), alias, promote, True, msg, run.id, f"models:/{name}/{mv.version}")
