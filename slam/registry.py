"""Register a SLAM delta in the MLflow model registry and decide, per language, whether it becomes champion.

    result = register_delta(cfg.tracking, "s3://b/run/delta", "s3://b/eval-slam/eval.json",
                            base_eval_uri="s3://b/eval-base/eval.json", name="slam")
    result.version, result.alias, result.reason, result.table     # "3", "champion", "adds sw …", markdown

What a version is: an MLflow 3 logged model (the pyfunc in slam.serving: base model URI + the delta,
signature question -> answer, an input example, the model card) whose source run is the training run
that produced the delta (the register run when that run is unknown), registered as a version tagged
with the delta fingerprint, the layers, the languages it was trained and evaluated on and its
per-language accuracy (slam.gate.Evidence). The version's description is the model card, with the
per-language comparison the gate made.

Race-safe and idempotent:
- one version per delta fingerprint: a registration that finds its fingerprint reuses that version; two
  that race both create one, then the higher-numbered one deletes itself;
- version numbers are the order of decisions: a version is gated only once every earlier version is
  decided (tag `slam.gate`, written last), against the champion at that moment; a version whose
  registration died before deciding is decided by its retry, or by the next registration after
  `GATE_WAIT_S`. So two concurrent registrations can never both win against the same old champion.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slam import storage
from slam.config import TrackingConfig
from slam.delta import fingerprint as delta_fingerprint
from slam.delta import read_manifest
from slam.errors import SlamError
from slam.gate import GATE_TAG, Decision, Evidence, decide
from slam.tracking import STEP_TAG, TRAIN_RUN_TAG, MlflowTracker, get_tracker, pipeline_tags

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
FINGERPRINT_TAG = "slam.delta_fingerprint"
GATE_WAIT_S = 60.0  # an earlier version undecided this long: its registration died, decide it ourselves
# Installed by whoever serves the model; torchvision is deliberately absent (MLflow's default adds it).
PIP_REQUIREMENTS = ["torch", "transformers", "safetensors", "accelerate"]
_DESCRIPTION_MAX = 4800  # MLflow's registry keeps 5000 characters of a version description


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
    source_run_id: str = ""
    model_id: str = ""
    table: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _version_tags(manifest: dict, evidence: Evidence, fingerprint: str, base: str, report: dict) -> dict[str, str]:
    layers = manifest.get("layers") or []
    tags = {FINGERPRINT_TAG: fingerprint, "slam.base_model": base, "slam.layers": ",".join(map(str, layers)),
            "slam.k": str(len(layers)), "slam.roles": ",".join(manifest.get("roles") or []),
            "slam.data": str(manifest.get("data") or ""), "slam.data_fingerprint": str(manifest.get("data_fingerprint") or ""),
            "slam.average": f"{float(report.get('average') or 0.0):.6f}", **evidence.tags(), **pipeline_tags()}
    return {k: v for k, v in tags.items() if v != ""}


def _ensure_registered_model(tracker: MlflowTracker, name: str) -> None:
    from mlflow.exceptions import MlflowException

    def ensure():
        try:
            tracker.client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                tracker.client.create_registered_model(name, tags={"slam.kind": "slam-delta"},
                                                       description="SLAM deltas (selected FFN layers) over a base LLM")
            except MlflowException as e2:  # created meanwhile by a concurrent registration
                if e2.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    tracker._call("create registered model", ensure)


def training_run_id(tracker: Any, manifest: dict) -> str:
    """The MLflow run that trained this delta (found by the run key its manifest names), or ''."""
    key = manifest.get("run_name")
    if not key or not getattr(tracker, "enabled", False):
        return ""
    found = tracker.find_run(str(key))
    return found.info.run_id if found is not None else ""


@contextlib.contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow 3.17's database/file registry stores resolve a `models:/m-…` source through a fresh
    MlflowClient(), i.e. the *global* tracking URI, not the client's (their own TODO): with an embedded
    sqlite store that global URI must be ours for the duration of the call (a server resolves it itself)."""
    import mlflow

    before = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def _log_model(tracker: MlflowTracker, *, source_run_id: str, name: str, delta_dir: Path, base: str, template: str,
               card: str, params: dict[str, str]) -> str:
    """An MLflow 3 logged model (models-from-code pyfunc, signature, input example, model card), linked to
    `source_run_id` as its output. Returns the model id."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    from slam import serving

    c = tracker.client
    lm = tracker._call("create logged model", c.create_logged_model, tracker.experiment_id, name=name,
                       source_run_id=source_run_id, params=params, model_type="slam-delta",
                       tags={"slam.base_model": base})
    with tempfile.TemporaryDirectory(prefix="slam-model-") as tmp:
        out = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            path=str(out), python_model=str(Path(serving.__file__)), artifacts={"delta": str(delta_dir)},
            model_config={"base": base, "template": template}, signature=serving.signature(),
            input_example=serving.INPUT_EXAMPLE, code_paths=[str(Path(__file__).resolve().parent)],
            pip_requirements=PIP_REQUIREMENTS, mlflow_model=Model(model_id=lm.model_id, run_id=source_run_id))
        (out / "model_card.md").write_text(card, encoding="utf-8")
        tracker._call("upload model", c.log_model_artifacts, lm.model_id, str(out))
    tracker._call("finalize model", c.finalize_logged_model, lm.model_id, "READY")
    if source_run_id:
        tracker._call("link model to run", c.log_outputs, source_run_id, [LoggedModelOutput(lm.model_id, step=0)])
    return lm.model_id


def _versions(tracker: MlflowTracker, name: str, fingerprint: str = "") -> list[Any]:
    flt = f"name = '{name}'" + (f" and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'" if fingerprint else "")
    found = tracker._call("search versions", tracker.client.search_model_versions, flt, max_results=10000)
    return sorted(found, key=lambda v: int(v.version))


def _ensure_version(tracker: MlflowTracker, name: str, fp: str, create: Any) -> tuple[Any, bool]:
    """The one version of delta `fp` (created by `create()` when there is none). Two registrations that
    race both create one; the lowest version number stays, the other deletes itself."""
    existing = _versions(tracker, name, fp)
    if existing:
        return existing[0], False
    mv = create()
    same = _versions(tracker, name, fp)
    winner = same[0] if same else mv
    if str(winner.version) != str(mv.version):
        log.info("delta %s was registered concurrently as version %s: dropping duplicate version %s",
                 fp, winner.version, mv.version)
        tracker._call("delete duplicate version", tracker.client.delete_model_version, name, str(mv.version))
        if getattr(mv, "model_id", None):
            tracker._call("delete duplicate model", tracker.client.delete_logged_model, mv.model_id)
        return winner, False
    return mv, True


def _champion(tracker: MlflowTracker, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    def get():
        try:
            return tracker.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    return tracker._call("get champion", get)


def _gate_version(tracker: MlflowTracker, name: str, version: Any, margin: float) -> Decision:
    """Gate one version against the current champion; alias first, then the decision tags (`slam.gate`
    last: it marks the version decided, which lets the next version go)."""
    evidence = Evidence.from_tags(dict(version.tags))
    if evidence is None:
        raise SlamError(f"{name} version {version.version} carries no per-language accuracy tags")
    champ = _champion(tracker, name)
    if champ is not None and str(champ.version) == str(version.version):  # alias set, then interrupted
        decision = Decision(True, "already the champion", decide(evidence, None, margin).rows)
    else:
        # a champion without per-language tags (not registered by slam) cannot be compared: replaced
        decision = decide(evidence, Evidence.from_tags(dict(champ.tags)) if champ is not None else None, margin)
    alias = CHAMPION if decision.promote else CHALLENGER
    c = tracker.client
    tracker._call("set alias", c.set_registered_model_alias, name, alias, str(version.version))
    description = (version.description or "").split("\n\n## Gate")[0].rstrip()
    gate_md = f"\n\n## Gate: {alias}\n\n{decision.reason}\n\n{decision.markdown()}\n"
    tracker._call("describe version", c.update_model_version, name, str(version.version),
                  description=description[:_DESCRIPTION_MAX - len(gate_md)] + gate_md)
    tags = decision.tags()
    gate_line = tags.pop(GATE_TAG)
    for k, v in tags.items():
        tracker._call("tag version", _set_version_tag, c, name, str(version.version), k, v)
    tracker._call("tag version", _set_version_tag, c, name, str(version.version), GATE_TAG, gate_line)
    return decision


# How a unique-key violation reads in an MLflow server's error, per backend store: sqlite, PostgreSQL, MySQL.
_UNIQUE_VIOLATION = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry", "IntegrityError")


def _set_version_tag(client: Any, name: str, version: str, key: str, value: str) -> None:
    """set_model_version_tag, safe when another registration writes the same tag at the same moment (one
    that found an earlier version undecided decides it too): MLflow's SQL store reads, then inserts, so
    the slower writer's insert fails on the unique key (seen in CI). The row exists then; the same call
    again is an update."""
    from mlflow.exceptions import MlflowException

    try:
        client.set_model_version_tag(name, version, key, value)
    except MlflowException as e:
        if not any(m in str(e) for m in _UNIQUE_VIOLATION):
            raise
        client.set_model_version_tag(name, version, key, value)


def _decide_in_order(tracker: MlflowTracker, name: str, version: str, margin: float) -> tuple[Decision | None, Any]:
    """Gate `version` once every earlier version is decided. Returns (decision, the version as now
    registered); decision None when it had already been decided (its `slam.gate` tag says how)."""
    deadline = time.time() + GATE_WAIT_S
    while True:
        versions = [v for v in _versions(tracker, name) if FINGERPRINT_TAG in v.tags]
        mine = next((v for v in versions if str(v.version) == str(version)), None)
        if mine is None:
            raise SlamError(f"{name} version {version} disappeared while waiting for the gate")
        if GATE_TAG in mine.tags:
            return None, mine
        earlier = [v for v in versions if int(v.version) < int(version) and GATE_TAG not in v.tags]
        if not earlier:
            return _gate_version(tracker, name, mine, margin), mine
        if time.time() > deadline:  # its registration died mid-way: decide it on its behalf, oldest first
            log.warning("%s version %s was never gated (its registration stopped): gating it now", name,
                        earlier[0].version)
            _gate_version(tracker, name, earlier[0], margin)
            continue
        time.sleep(0.5)


def register_delta(tracking: TrackingConfig, delta_uri: str, eval_uri: str, *, name: str = "", base: str = "",
                   base_eval_uri: str = "", merged: bool = False, template: str = "alpaca",
                   parent_run_id: str | None = None, run_key: str = "") -> RegisterResult:
    """Log + register the delta (one version per fingerprint) and gate `champion` per language."""
    name = name or tracking.registry_name
    tracker = get_tracker(tracking)
    if not isinstance(tracker, MlflowTracker):
        raise SlamError("slam register needs an MLflow tracking URI (tracking.uri or MLFLOW_TRACKING_URI)")
    from slam.evaluate import check_report

    report = check_report(storage.read_json(eval_uri), eval_uri)
    base_report = check_report(storage.read_json(base_eval_uri), base_eval_uri) if base_eval_uri else None
    with storage.local_copy(delta_uri) as delta_dir:
        manifest = read_manifest(delta_dir)
        mb = manifest.get("base")
        base = base or str(manifest.get("base_path") or (mb.get("path") if isinstance(mb, dict) else mb) or "")
        if not base:
            raise SlamError(f"{delta_uri}/manifest.json names no base model: pass --base PATH")
        evidence = Evidence.from_reports(report, base_report, trained=manifest.get("languages"))
        fp = delta_fingerprint(delta_dir)
        _ensure_registered_model(tracker, name)
        train_run = training_run_id(tracker, manifest)
        tags = {STEP_TAG: "register", TRAIN_RUN_TAG: train_run or None, "slam.delta_fingerprint": fp}
        with tracker.run("register", key=run_key or f"register/{name}/{fp}", parent_run_id=parent_run_id,
                         tags=tags) as run:
            run.log_params({"base_model": base, "layers": ",".join(map(str, manifest.get("layers") or [])),
                            "delta_uri": delta_uri, "registry_name": name, "gate_margin": tracking.gate_margin})
            source_run = train_run or run.id
            card = model_card(name, manifest, evidence, base, delta_uri, train_run)

            def create():
                model_id = _log_model(tracker, source_run_id=source_run, name=name, delta_dir=Path(delta_dir),
                                      base=base, template=template, card=card,
                                      params={"layers": ",".join(map(str, manifest.get("layers") or [])),
                                              "base_model": base, "delta_fingerprint": fp})
                with _global_tracking_uri(tracker.uri):
                    return tracker._call("create model version", tracker.client.create_model_version, name,
                                         f"models:/{model_id}", run_id=source_run, model_id=model_id,
                                         tags=_version_tags(manifest, evidence, fp, base, report), description=card)

            mv, created = _ensure_version(tracker, name, fp, create)
            decision, mv = _decide_in_order(tracker, name, str(mv.version), tracking.gate_margin)
            if merged and created:
                with tempfile.TemporaryDirectory(prefix="slam-register-") as tmp:
                    _save_merged(base, Path(delta_dir), Path(tmp) / "merged")
                    run.log_artifact(Path(tmp) / "merged", "merged")
                tracker._call("tag version", _set_version_tag, tracker.client, name, str(mv.version),
                              "slam.merged_uri", f"runs:/{run.id}/merged")
            gate_line = dict(mv.tags).get(GATE_TAG, "")
            alias = CHAMPION if (decision.promote if decision else gate_line.startswith(CHAMPION)) else CHALLENGER
            champ = _champion(tracker, name)
            is_champ = champ is not None and str(champ.version) == str(mv.version)
            reason = decision.reason if decision else gate_line.partition(": ")[2]
            table = decision.markdown() if decision else ""
            run.log_text(card + (f"\n## Gate: {alias}\n\n{reason}\n\n{table}\n" if table else ""), "model_card.md")
            run.set_tags({"slam.registered_version": str(mv.version), GATE_TAG: f"{alias}: {reason}"})
    if created or decision is not None:
        msg = (f"{name} version {mv.version} is the new {CHAMPION}: {reason}" if alias == CHAMPION else
               f"{name} version {mv.version} stays {CHALLENGER}: {reason}")
    else:
        msg = f"delta {fp} is already version {mv.version} of {name} ({alias}: {reason}); nothing registered"
    log.info(msg)
    model_id = getattr(mv, "model_id", None) or (mv.source[len("models:/"):] if str(mv.source).startswith("models:/m-")
                                                 else "")
    return RegisterResult(name, str(mv.version), CHAMPION if is_champ else alias, is_champ, created, msg, run.id,
                          f"models:/{name}/{mv.version}", str(mv.run_id or source_run), model_id, table)


def model_card(name: str, manifest: dict, evidence: Evidence, base: str, delta_uri: str, train_run: str) -> str:
    """The version's description: what it is, where it came from, accuracy per language vs the base."""
    langs = sorted(evidence.accuracy, key=lambda x: (x != "en", x))
    rows = ["| lang | base (%) | SLAM (%) | Δ (points) |", "|---|---:|---:|---:|"]
    for lang in langs:
        a, b = evidence.accuracy[lang], evidence.base.get(lang)
        rows.append(f"| {lang} | {'—' if b is None else f'{100 * b:.1f}'} | {100 * a:.1f} | "
                    f"{'—' if b is None else f'{100 * (a - b):+.1f}'} |")
    layers = ", ".join(map(str, manifest.get("layers") or []))
    return (f"# {name}: SLAM delta over `{base}`\n\n"
            f"Fine-tuned FFN `{'+'.join(manifest.get('roles') or [])}` of layers {layers} "
            f"({float(manifest.get('fraction') or 0):.2%} of the parameters).  \n"
            f"Trained on: {', '.join(evidence.trained) or '(unknown)'} · evaluated on: {', '.join(langs)}  \n"
            f"Data: `{manifest.get('data', '')}` · delta: `{delta_uri}`"
            + (f" · training run `{train_run}`" if train_run else "") + "\n\n"
            "## Accuracy per language\n\n" + "\n".join(rows) + "\n\n"
            "Serve: `mlflow.pyfunc.load_model('models:/" + name + "@champion').predict({'question': [...]})`\n")


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
