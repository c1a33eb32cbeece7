"""The Kubeflow Pipelines client side: compile the DAG, check parameters, submit, schedule.

    slam pipeline compile --out pipeline.yaml [--gpu] [--node-selector pool=gpu] [--toleration nvidia.com/gpu]
    slam pipeline submit --host https://kfp.example.com languages=sw,th storage=s3://b/runs train.max_steps=500
    slam pipeline schedule --host URL --cron "0 0 3 * * *" languages_uri=s3://b/languages storage=s3://b/runs
    slam pipeline schedules --host URL [--disable ID | --enable ID | --delete ID]

KFP cron expressions have 6 fields with seconds first (robfig/cron): "0 0 3 * * 1" = Mondays 03:00:00.
Authentication to a real KFP (Dex/OIDC, in-cluster SA tokens) is kfp.Client's: set KF_PIPELINES_* or run
where `~/.config/kfp/context.json` exists; `--token` passes a bearer token.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from slam.config import parse_key_values
from slam.errors import SlamError

CRON_FIELDS = ("seconds", "minutes", "hours", "day-of-month", "month", "day-of-week")
_CRON_CHARS = set("0123456789*/,-?LW#ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def compile_pipeline(out: str | os.PathLike, opts: Any = None) -> str:
    """Compile to IR YAML (two documents when kfp-kubernetes settings are used)."""
    from kfp import compiler

    from pipeline.pipeline import CompileOptions, build_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(opts or CompileOptions()), str(out))
    return str(out)


def pipeline_inputs() -> dict[str, Any]:
    """Pipeline parameter name -> kfp InputSpec (type and default)."""
    from pipeline.pipeline import slam_pipeline

    return dict(slam_pipeline.component_spec.inputs or {})


OVERRIDE_PARAMS = ("train_overrides", "tune_overrides")


def parse_params(items: list[str] | None, **named: Any) -> dict[str, Any]:
    """The one override syntax on the command line -> typed pipeline arguments:
    `name=value` sets a pipeline parameter (a list parameter given twice accumulates; a JSON list works
    too), `section.key=value` is a config override for the Tune trials and the training run (appended
    to train_overrides and tune_overrides). Keyword values that are not None come first. Unknown names
    and values of the wrong type are reported together, in one message."""
    import json

    specs = pipeline_inputs()
    problems: list[str] = []
    raw: dict[str, Any] = {k: v for k, v in named.items() if v is not None}
    for item in items or []:
        kv = parse_key_values([item], "argument", problems)
        if not kv:
            continue
        ((key, value),) = kv.items()
        if "." in key:  # section.key=value: a config override
            for k in OVERRIDE_PARAMS:
                raw[k] = [*_as_list(raw.get(k)), f"{key}={value}"]
            continue
        key = key.replace("-", "_")
        if specs.get(key) is not None and specs[key].type == "List":
            try:
                raw[key] = [*_as_list(raw.get(key)), *_as_list(value)]
            except ValueError:  # JSONDecodeError included
                problems.append(f"parameter {key}: expected a list, got {value!r}")
        else:
            raw[key] = value
    out: dict[str, Any] = {}
    for k, v in raw.items():
        spec = specs.get(k)
        if spec is None:
            problems.append(f"unknown pipeline parameter {k!r} (valid: {', '.join(sorted(specs))}; config overrides "
                            "look like section.key=value)")
            continue
        try:
            out[k] = _typed(spec.type, v)
        except (TypeError, ValueError, json.JSONDecodeError):
            problems.append(f"parameter {k}: expected {_TYPE_WORDS.get(spec.type, spec.type)}, got {v!r}")
    if problems:
        raise SlamError("; ".join(problems))
    return out


_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "List": "a list"}


def _as_list(v: Any) -> list:
    """A list parameter's value: a list, a JSON list string, or one item."""
    import json

    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    text = str(v).strip()
    if text.startswith("["):
        loaded = json.loads(text)
        if not isinstance(loaded, list):
            raise ValueError(text)
        return loaded
    return [text]


def _typed(kind: str, v: Any) -> Any:
    if kind == "Integer":
        return int(v)
    if kind == "Float":
        return float(v)
    if kind == "Boolean":
        if str(v).lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError(v)
        return str(v).lower() in ("1", "true", "yes")
    if kind == "List":
        return [str(x) for x in _as_list(v)]
    return str(v)


def validate_cron(expr: str) -> str:
    """KFP (robfig/cron) wants 6 fields, seconds first; explain the usual 5-field mistake."""
    fields = expr.split()
    if len(fields) == 5:
        raise SlamError(f"KFP cron needs 6 fields (seconds first): did you mean '0 {' '.join(fields)}'?")
    if len(fields) != 6:
        raise SlamError(f"KFP cron needs 6 fields ({' '.join(CRON_FIELDS)}), got {len(fields)} in {expr!r}")
    bad = [f"{name}={f!r}" for name, f in zip(CRON_FIELDS, fields, strict=True) if not set(f) <= _CRON_CHARS]
    if bad:
        raise SlamError(f"cron {expr!r}: unexpected characters in {', '.join(bad)}")
    return " ".join(fields)


def _client(host: str, namespace: str = "", token: str = ""):
    import kfp

    kw: dict[str, Any] = {"host": host}
    if namespace:
        kw["namespace"] = namespace
    if token:
        kw["existing_token"] = token
    return kfp.Client(**kw)


def _package(package: str | None, opts: Any, tmp: str) -> str:
    return package or compile_pipeline(Path(tmp) / "slam-pipeline.yaml", opts)


def submit(host: str, params: dict[str, Any], *, experiment: str = "slam", run_name: str = "",
           package: str | None = None, opts: Any = None, namespace: str = "", token: str = "",
           enable_caching: bool | None = None) -> dict[str, str]:
    """Upload-free run: kfp.Client.create_run_from_pipeline_package (the package travels in the request)."""
    client = _client(host, namespace, token)
    with tempfile.TemporaryDirectory(prefix="slam-kfp-") as tmp:
        result = client.create_run_from_pipeline_package(
            _package(package, opts, tmp), arguments=params, run_name=run_name or _run_name(params),
            experiment_name=experiment, enable_caching=enable_caching)
    return {"run_id": result.run_id, "url": f"{host.rstrip('/')}/#/runs/details/{result.run_id}"}


def schedule(host: str, cron: str, params: dict[str, Any], *, name: str = "", experiment: str = "slam",
             package: str | None = None, opts: Any = None, namespace: str = "", token: str = "",
             max_concurrency: int = 1, catchup: bool = False) -> dict[str, str]:
    """A recurring run (e.g. weekly retraining for new language data); no backfill unless `catchup`."""
    cron = validate_cron(cron)
    if params.get("languages_uri") and not params.get("mlflow_uri"):
        raise SlamError("a schedule that watches languages_uri needs mlflow_uri: the champion's languages, which "
                        "decide whether anything is new, live in the model registry")
    client = _client(host, namespace, token)
    exp = client.create_experiment(experiment, namespace=namespace or None)
    name = name or (f"slam-watch-{_slug(params['languages_uri'])}" if params.get("languages_uri") else
                    f"slam-{params.get('languages', 'default').replace(',', '-')}")
    with tempfile.TemporaryDirectory(prefix="slam-kfp-") as tmp:
        rr = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, params=params,
            pipeline_package_path=_package(package, opts, tmp), max_concurrency=max_concurrency,
            no_catchup=not catchup, enabled=True,
            description=(f"SLAM retraining when {params['languages_uri']} gets a language the champion lacks"
                         if params.get("languages_uri") else
                         f"SLAM retraining on {params.get('languages', '(pipeline default languages)')}"))
    return {"recurring_run_id": rr.recurring_run_id, "name": name, "cron": cron}


def list_schedules(host: str, *, experiment: str = "", namespace: str = "", token: str = "") -> list[dict]:
    client = _client(host, namespace, token)
    kw: dict[str, Any] = {"page_size": 100}
    if experiment:
        kw["experiment_id"] = client.get_experiment(experiment_name=experiment, namespace=namespace or None
                                                    ).experiment_id
    resp = client.list_recurring_runs(**kw)
    out = []
    for rr in resp.recurring_runs or []:
        cron = getattr(getattr(getattr(rr, "trigger", None), "cron_schedule", None), "cron", "") or ""
        out.append({"id": rr.recurring_run_id, "name": rr.display_name, "cron": cron,
                    "mode": str(rr.mode or ""), "status": str(rr.status or "")})
    return out


def set_schedule(host: str, recurring_run_id: str, action: str, *, namespace: str = "", token: str = "") -> None:
    client = _client(host, namespace, token)
    fn = {"disable": client.disable_recurring_run, "enable": client.enable_recurring_run,
          "delete": client.delete_recurring_run}[action]
    fn(recurring_run_id)


def _slug(uri: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in uri.split("://")[-1]).strip("-")[-40:]


def _run_name(params: dict[str, Any]) -> str:
    return f"slam-{params.get('languages', 'default').replace(',', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
