"""The Kubeflow Pipelines client side: compile the DAG, check parameters, submit, schedule.

    slam pipeline compile --out pipeline.yaml [--gpu] [--node-selector pool=gpu] [--toleration nvidia.com/gpu]
    slam pipeline submit --host https://kfp.example.com --experiment slam -p languages=sw,th -p storage=s3://b/runs
    slam pipeline schedule --host URL --cron "0 0 3 * * 1" --languages sw,th [--name weekly-sw-th]
    slam pipeline schedules --host URL [--disable ID | --enable ID | --delete ID]

KFP cron expressions have 6 fields with seconds first (robfig/cron): "0 0 3 * * 1" = Mondays 03:00:00.
Authentication to a real KFP (Dex/OIDC, in-cluster SA tokens) is kfp.Client's: set KF_PIPELINES_* or run
where `~/.config/kfp/context.json` exists; `--token` passes a bearer token.
Every request has a (connect, read) timeout; reads are retried with backoff on connection errors and
502/503/504, a create only when the request cannot have arrived (connection refused) - a second POST
after a lost answer could start a second run. The last failure is one SlamError naming the host.
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


def parse_params(items: list[str] | None, **named: Any) -> dict[str, Any]:
    """`key=value` strings (+ keyword values that are not None) -> typed pipeline arguments.

    Unknown names and values of the wrong type are reported together, in one message."""
    specs = pipeline_inputs()
    problems: list[str] = []
    raw: dict[str, Any] = {k.replace("-", "_"): v for k, v in parse_key_values(items, "parameter", problems).items()}
    raw.update({k: v for k, v in named.items() if v is not None})
    out: dict[str, Any] = {}
    for k, v in raw.items():
        spec = specs.get(k)
        if spec is None:
            problems.append(f"unknown pipeline parameter {k!r} (valid: {', '.join(sorted(specs))})")
            continue
        if spec.type == "Integer":
            try:
                out[k] = int(v)
            except (TypeError, ValueError):
                problems.append(f"parameter {k}: expected an integer, got {v!r}")
        elif spec.type == "Boolean":
            out[k] = str(v).lower() in ("1", "true", "yes")
        elif spec.type == "Float":
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                problems.append(f"parameter {k}: expected a number, got {v!r}")
        else:
            out[k] = str(v)
    if problems:
        raise SlamError("; ".join(problems))
    return out


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


TIMEOUT = (10, 60)  # seconds: connect, read
RETRIES = dict(total=5, connect=5, read=3, status=3, backoff_factor=1.0, status_forcelist=(502, 503, 504),
               allowed_methods=frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"}), raise_on_status=False)


def _harden(api_client: Any) -> None:
    """Timeouts and bounded retries on kfp.Client's one REST client (kfp.Client exposes neither).
    urllib3 retries a connection error for any method (the request never left) but a read error or a
    5xx only for the idempotent `allowed_methods`: no POST is sent twice."""
    import urllib3

    rest = api_client.rest_client
    rest.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(**RETRIES)
    rest.pool_manager.clear()  # pools made during kfp.Client() (healthz) would keep the old settings
    request = rest.request  # every verb goes through it, passing _request_timeout=None (= wait forever)

    def with_timeout(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or TIMEOUT, **kwargs)

    rest.request = with_timeout


def _client(host: str, namespace: str = "", token: str = ""):
    import kfp

    kw: dict[str, Any] = {"host": host}
    if namespace:
        kw["namespace"] = namespace
    if token:
        kw["existing_token"] = token
    client = _network(host, "connect", lambda: kfp.Client(**kw))
    _harden(client._run_api.api_client)
    return client


def _network(host: str, what: str, fn):
    """Run one KFP call; connection failures and 5xx after urllib3's retries become one line."""
    import urllib3

    try:
        return fn()
    except urllib3.exceptions.HTTPError as e:
        raise SlamError(f"KFP at {host}: {what} failed: {str(e).splitlines()[0][:300]}") from None
    except Exception as e:
        if type(e).__name__ == "ApiException":  # kfp_server_api's: the server answered with an error
            raise SlamError(f"KFP at {host}: {what} failed: {getattr(e, 'status', '')} {getattr(e, 'reason', '')} "
                            f"{str(getattr(e, 'body', '') or '')[:300]}".strip()) from None
        raise


def _package(package: str | None, opts: Any, tmp: str) -> str:
    return package or compile_pipeline(Path(tmp) / "slam-pipeline.yaml", opts)


def _service_account(opts: Any) -> str:
    from pipeline.pipeline import CompileOptions

    return (opts or CompileOptions()).service_account


def submit(host: str, params: dict[str, Any], *, experiment: str = "slam", run_name: str = "",
           package: str | None = None, opts: Any = None, namespace: str = "", token: str = "",
           enable_caching: bool | None = None) -> dict[str, str]:
    """Upload-free run: kfp.Client.create_run_from_pipeline_package (the package travels in the request);
    the run's pods use opts.service_account (default slam-pipeline, the one k8s/base/rbac.yaml binds)."""
    client = _client(host, namespace, token)
    with tempfile.TemporaryDirectory(prefix="slam-kfp-") as tmp:
        pkg = _package(package, opts, tmp)
        result = _network(host, "create run", lambda: client.create_run_from_pipeline_package(
            pkg, arguments=params, run_name=run_name or _run_name(params), experiment_name=experiment,
            enable_caching=enable_caching, service_account=_service_account(opts) or None))
    return {"run_id": result.run_id, "url": f"{host.rstrip('/')}/#/runs/details/{result.run_id}"}


def schedule(host: str, cron: str, params: dict[str, Any], *, name: str = "", experiment: str = "slam",
             package: str | None = None, opts: Any = None, namespace: str = "", token: str = "",
             max_concurrency: int = 1, catchup: bool = False) -> dict[str, str]:
    """A recurring run (e.g. weekly retraining for new language data); no backfill unless `catchup`."""
    cron = validate_cron(cron)
    client = _client(host, namespace, token)
    exp = _network(host, "create experiment", lambda: client.create_experiment(experiment, namespace=namespace or None))
    name = name or f"slam-{params.get('languages', 'default').replace(',', '-')}"
    with tempfile.TemporaryDirectory(prefix="slam-kfp-") as tmp:
        pkg = _package(package, opts, tmp)
        rr = _network(host, "create recurring run", lambda: client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, params=params,
            pipeline_package_path=pkg, max_concurrency=max_concurrency, no_catchup=not catchup, enabled=True,
            service_account=_service_account(opts) or None,
            description=f"SLAM retraining on {params.get('languages', '(pipeline default languages)')}"))
    return {"recurring_run_id": rr.recurring_run_id, "name": name, "cron": cron}


def list_schedules(host: str, *, experiment: str = "", namespace: str = "", token: str = "") -> list[dict]:
    client = _client(host, namespace, token)
    kw: dict[str, Any] = {"page_size": 100}
    if experiment:
        kw["experiment_id"] = _network(host, "get experiment", lambda: client.get_experiment(
            experiment_name=experiment, namespace=namespace or None)).experiment_id
    resp = _network(host, "list recurring runs", lambda: client.list_recurring_runs(**kw))
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
    _network(host, f"{action} recurring run", lambda: fn(recurring_run_id))


def _run_name(params: dict[str, Any]) -> str:
    return f"slam-{params.get('languages', 'default').replace(',', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
