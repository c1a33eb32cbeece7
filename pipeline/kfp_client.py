"""The Kubeflow Pipelines client side: compile the DAG, check parameters, submit, schedule.

    slam pipeline compile --out pipeline.yaml [--gpu] [--node-selector pool=gpu] [--toleration nvidia.com/gpu]
    slam pipeline submit --host https://kfp.example.com languages=sw,th storage=s3://b/runs train.max_steps=500
    slam pipeline schedule --host URL --cron "0 0 3 * * *" languages_uri=s3://b/languages storage=s3://b/runs
    slam pipeline schedules --host URL [--disable ID | --enable ID | --delete ID]

KFP cron expressions have 6 fields with seconds first (robfig/cron): "0 0 3 * * 1" = Mondays 03:00:00.
Authentication to a real KFP (Dex/OIDC, in-cluster SA tokens) is kfp.Client's: set KF_PIPELINES_* or run
where `~/.config/kfp/context.json` exists; a bearer token comes from $SLAM_KFP_TOKEN (never a command-line
argument: those show in `ps` and shell history). Every parameter is checked here, before the host is
contacted. Every request has a (connect, read) timeout; reads are retried with backoff on connection
errors and 502/503/504, a create only when the request cannot have arrived (connection refused) - a
second POST after a lost answer could start a second run. The last failure is one line naming the host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slam.config import parse_key_values, split_list
from slam.errors import SlamError

CRON_FIELDS = ("seconds", "minutes", "hours", "day-of-month", "month", "day-of-week")
_CRON_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_CRON_NAMES = ({}, {}, {}, {}, {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
               {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())})
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
TOKEN_ENV = "SLAM_KFP_TOKEN"
MAX_CONCURRENCY = 10  # the KFP API's bound for a recurring run


def compile_pipeline(out: str | os.PathLike, opts: Any = None) -> str:
    """Compile to IR YAML (two documents when kfp-kubernetes settings are used)."""
    from kfp import compiler

    from pipeline.pipeline import CompileOptions, build_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.yaml")
    try:
        compiler.Compiler().compile(build_pipeline(opts or CompileOptions()), str(tmp))
        tmp.write_text(exec_executor(tmp.read_text(encoding="utf-8")), encoding="utf-8")
        os.replace(tmp, out)  # never a half-written package at `out`
    finally:
        tmp.unlink(missing_ok=True)
    return str(out)


_EXECUTOR_LINE = "_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main"
_EXEC_LINE = _EXECUTOR_LINE.replace(" python3 ", " exec python3 ")


def exec_executor(text: str) -> str:
    """Make each step's Python process the container's main process: KFP runs it under `sh -ec '...;
    python3 -m kfp.dsl.executor_main ...'`, and on Terminate Argo's emissary sends SIGTERM to that shell's
    process group and then waits for the SHELL only - the shell dies at once, the container ends and the
    step's Python process is killed before its SIGTERM handler has deleted the step's RayJob (whose GPUs
    would then run on until its deadline). `exec` puts Python in the shell's place, so the handler runs
    and the container lasts until it is done (within terminationGracePeriodSeconds)."""
    import yaml

    n = text.count(_EXECUTOR_LINE)
    text = text.replace(_EXECUTOR_LINE, _EXEC_LINE)
    executors = (next(yaml.safe_load_all(text)).get("deploymentSpec") or {}).get("executors") or {}
    scripts = [" ".join(e["container"].get("command") or []) for e in executors.values() if "container" in e]
    if n != len(scripts) or not all(_EXEC_LINE in s for s in scripts):
        raise SlamError(f"compiled pipeline: expected {len(scripts)} KFP executor command(s) to rewrite, found {n} "
                        f"(a kfp release with a new component command?)")
    return text


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
    problems += check_params({**{k: v.default for k, v in specs.items() if v.default is not None}, **out})
    if problems:
        raise SlamError("; ".join(problems))
    return out


def check_params(params: dict[str, Any]) -> list[str]:
    """What would fail (or leak) inside the pipeline, said before any host is contacted."""
    from slam.config import MAX_INDEX, parse_int_list, split_overrides
    from slam.config_checks import check_langs
    from slam.errors import ConfigError
    from slam.probe.select import METHODS, SELECTIONS
    from slam.redact import carries_credentials

    p: list[str] = []
    try:
        langs = split_list(params.get("languages", ""), "parameter languages")
        check_langs(langs, "parameter languages", p)
        if not langs:
            p.append("parameter languages: give at least one language code")
    except ConfigError as e:
        p.append(str(e))
    for name, low in (("synth_problems", 1), ("probe_top_k", 1), ("probe_questions", 0), ("synth_seed", 0),
                      ("eval_limit", 0), ("eval_max_new_tokens", 0)):
        if name in params and params[name] < low:
            p.append(f"parameter {name}: must be >= {low}, got {params[name]}")
    for name, allowed in (("probe_method", METHODS), ("probe_selection", SELECTIONS), ("launcher", ("local", "kuberay"))):
        if name in params and params[name] not in allowed:
            p.append(f"parameter {name}: {params[name]!r} is not one of {', '.join(allowed)}")
    bad_tasks = [t for t in split_list(params.get("eval_tasks", "")) if t not in ("synthetic", "mgsm", "msvamp")]
    if bad_tasks:
        p.append(f"parameter eval_tasks: unknown task(s) {', '.join(bad_tasks)} (synthetic, mgsm, msvamp)")
    ks = parse_int_list(str(params.get("k_grid", "")), "parameter k_grid", p)
    if not ks or any(not 0 < k <= MAX_INDEX for k in ks) or len(ks) > 64:
        p.append(f"parameter k_grid: 1-64 layer counts in 1..{MAX_INDEX}, got {params.get('k_grid')!r}")
    for name in ("train_overrides", "tune_overrides"):
        if params.get(name) and not params.get("preset"):
            try:
                from slam.config import load_config

                value = params[name]
                load_config(None, list(value) if isinstance(value, list) else split_overrides(value))
            except ConfigError as e:
                p.append(f"parameter {name}: {e}")
    # parameters are stored and shown by KFP (UI, API, run history): never a credential
    for name, value in params.items():
        texts = [str(x) for x in value] if isinstance(value, list) else [value] if isinstance(value, str) else []
        why = next((w for w in map(carries_credentials, texts) if w), None)
        if why:
            p.append(f"parameter {name} carries {why}: KFP stores and shows parameters; give credentials "
                     "to the steps from a Kubernetes Secret (--s3-secret / mlflow secret)")
    return p
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
    """KFP (robfig/cron) wants 6 fields, seconds first; explain the usual 5-field mistake; check each field's range."""
    text = " ".join(str(expr).split())
    if text.startswith("@"):
        if text in _CRON_DESCRIPTORS or re.fullmatch(r"@every (\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", text):
            return text
        raise SlamError(f"cron {expr!r}: unknown descriptor (valid: {', '.join(_CRON_DESCRIPTORS)}, @every 1h30m)")
    fields = text.split()
    if len(fields) == 5:
        raise SlamError(f"KFP cron needs 6 fields (seconds first): did you mean '0 {' '.join(fields)}'?")
    if len(fields) != 6:
        raise SlamError(f"KFP cron needs 6 fields ({' '.join(CRON_FIELDS)}), got {len(fields)} in {expr!r}")
    bad = [f"{name}={f!r}" for name, f, rng, names in zip(CRON_FIELDS, fields, _CRON_RANGES, _CRON_NAMES, strict=True)
           if not _cron_field_ok(f, rng, names, allow_q=name in ("day-of-month", "day-of-week"))]
    if bad:
        raise SlamError(f"cron {expr!r}: invalid {', '.join(bad)} (e.g. '0 0 3 * * 1' = Mondays 03:00:00)")
    return text


def _cron_field_ok(field: str, rng: tuple[int, int], names: dict[str, int], allow_q: bool) -> bool:
    if field == "?" and allow_q:
        return True
    lo, hi = rng

    def num(x: str) -> int | None:
        v = names.get(x.upper()) if x.isalpha() else int(x) if x.isdigit() else None
        return v if v is not None and lo <= v <= hi else None

    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or not 0 < int(step) <= hi):
            return False
        if base == "*":
            continue
        a, dash, b = base.partition("-")
        if num(a) is None or (dash and (num(b) is None or num(b) < num(a))):
            return False
    return True


def check_schedule(cron: str, max_concurrency: int) -> None:
    problems = []
    try:
        validate_cron(cron)
    except SlamError as e:
        problems.append(str(e))
    if not 1 <= max_concurrency <= MAX_CONCURRENCY:
        problems.append(f"--max-concurrency must be in 1..{MAX_CONCURRENCY} (KFP's bound), got {max_concurrency}")
    if problems:
        raise SlamError("; ".join(problems))


@contextlib.contextmanager
def kfp_errors(host: str, what: str = "request") -> Iterator[None]:
    """The KFP host's failures as one line (unreachable, refused, timed out, unauthorized), never a urllib3
    traceback; credentials redacted."""
    from slam.redact import redact

    try:
        yield
    except SlamError:
        raise
    except Exception as e:
        import urllib3

        if type(e).__name__ == "ApiException":  # kfp_server_api's: the server answered with an error
            status = getattr(e, "status", "")
            body = str(getattr(e, "body", "") or "").splitlines()
            hint = ": check the token ($SLAM_KFP_TOKEN) and --namespace" if status in (401, 403) else ""
            raise SlamError(redact(f"KFP at {host}: {what} failed: {status} {getattr(e, 'reason', '')} "
                                   f"{body[0][:300] if body else ''}".strip() + hint)) from None
        if isinstance(e, (urllib3.exceptions.HTTPError, OSError, ConnectionError)):
            reason = getattr(e, "reason", None) or e
            raise SlamError(redact(f"cannot reach KFP at {host}: {what} failed: {type(reason).__name__}: "
                                   f"{(str(reason).splitlines() or [''])[0][-200:]}")) from None
        raise


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
    token = token or os.environ.get(TOKEN_ENV, "")
    if token:
        kw["existing_token"] = token
    # noise on a user's terminal: "only works with KFP v2.0.0-beta.2 and later", urllib3's retry warnings
    retries_log = logging.getLogger("urllib3.connectionpool")
    level = retries_log.level
    retries_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client = _network(host, "connect", lambda: kfp.Client(**kw))
    finally:
        retries_log.setLevel(level)
    _harden(client._run_api.api_client)
    return client


def _network(host: str, what: str, fn):
    """Run one KFP call; connection failures and 5xx after urllib3's retries become one line."""
    with kfp_errors(host, what):
        return fn()


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
    check_schedule(cron, max_concurrency)
    cron = validate_cron(cron)
    if params.get("languages_uri") and not params.get("mlflow_uri"):
        raise SlamError("a schedule that watches languages_uri needs mlflow_uri: the champion's languages, which "
                        "decide whether anything is new, live in the model registry")
    client = _client(host, namespace, token)
    exp = _network(host, "create experiment", lambda: client.create_experiment(experiment, namespace=namespace or None))
    name = name or (f"slam-watch-{_slug(params['languages_uri'])}" if params.get("languages_uri") else
                    f"slam-{params.get('languages', 'default').replace(',', '-')}")
    with tempfile.TemporaryDirectory(prefix="slam-kfp-") as tmp:
        pkg = _package(package, opts, tmp)
        rr = _network(host, "create recurring run", lambda: client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, params=params,
            pipeline_package_path=pkg, max_concurrency=max_concurrency, no_catchup=not catchup, enabled=True,
            service_account=_service_account(opts) or None,
            description=(f"SLAM retraining when {params['languages_uri']} gets a language the champion lacks"
                         if params.get("languages_uri") else
                         f"SLAM retraining on {params.get('languages', '(pipeline default languages)')}")))
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


def _slug(uri: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in uri.split("://")[-1]).strip("-")[-40:]


def _run_name(params: dict[str, Any]) -> str:
    return f"slam-{params.get('languages', 'default').replace(',', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
