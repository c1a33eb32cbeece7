"""`slam pipeline …` and `slam demo`: the Kubeflow pipeline from the command line.

    slam pipeline compile --out pipeline.yaml --gpu --node-selector pool=gpu --toleration nvidia.com/gpu
    slam pipeline params                                      # every parameter: type, default, what it does
    slam pipeline submit --host https://kfp.example.com languages=sw,th storage=s3://bucket/runs train.max_steps=500
    slam pipeline schedule --host URL --cron "0 0 3 * * *" languages_uri=s3://b/languages mlflow_uri=http://mlflow:5000
    slam pipeline schedules --host URL [--disable ID]
    slam pipeline run storage=runs/local synth_problems=100   # whole DAG here via kfp.local
    slam demo [--quick] [--real --shared-data DIR] [--out runs/demo] [--storage s3://b/demo] [name=value | section.key=value ...]

One syntax for what a run is made of: `name=value` sets a pipeline parameter, `section.key=value` is a
config override for the Tune trials and the training run (both repeatable). These subcommands live with
the pipeline (they need kfp); the `slam` CLI finds them through the `slam.commands` entry points
declared in pyproject.toml, so the library itself never imports upward.
"""

from __future__ import annotations

import argparse
import json

from pipeline import kfp_client
from slam.commands import command, group
from slam.config import parse_key_values

ARGS_HELP = "pipeline parameters name=value (see `slam pipeline params`) and config overrides section.key=value"


def _opts(args: argparse.Namespace):
    from pipeline.pipeline import CompileOptions
    from slam import k8s_values as kv

    selector = parse_key_values(getattr(args, "node_selector", None), "--node-selector")
    tolerations = list(getattr(args, "toleration", None) or [])
    secret = getattr(args, "s3_secret", "slam-s3")
    kv.check(*[kv.label_problem(k, v, "--node-selector") for k, v in selector.items()],
             *[kv.label_key_problem(t, "--toleration") for t in tolerations],
             kv.label_key_problem(getattr(args, "gpu_type", "nvidia.com/gpu"), "--gpu-type"),
             kv.name_problem(secret, "--s3-secret") if secret else None)
    return CompileOptions(gpu=getattr(args, "gpu", False), gpu_type=getattr(args, "gpu_type", "nvidia.com/gpu"),
                          node_selector=selector, tolerations=list(getattr(args, "toleration", None) or []),
                          s3_secret=getattr(args, "s3_secret", "slam-s3"),
                          service_account=getattr(args, "service_account", "slam-pipeline"),
                          rayjob_ttl_s=getattr(args, "rayjob_ttl", 120))


def _add_compile_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu", action="store_true", help="request a GPU for tune/train/evaluate")
    p.add_argument("--gpu-type", default="nvidia.com/gpu", help="accelerator resource name")
    p.add_argument("--node-selector", action="append", metavar="LABEL=VALUE", help="heavy steps' node labels")
    p.add_argument("--toleration", action="append", metavar="TAINT_KEY", help="taint key the heavy steps tolerate")
    p.add_argument("--s3-secret", default="slam-s3", help="Secret with AWS_* keys for every step ('' = none)")
    p.add_argument("--service-account", default="slam-pipeline",
                   help="service account of the run's pods (submit/schedule; k8s/base/rbac.yaml binds it)")
    p.add_argument("--rayjob-ttl", type=int, default=120, help="seconds a finished RayJob's cluster stays")


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("params", nargs="*", default=[], metavar="NAME=VALUE|SECTION.KEY=VALUE", help=ARGS_HELP)


def _add_host(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")
    p.add_argument("--namespace", default="", help="Kubeflow profile namespace (multi-user KFP)")
    # a token on the command line shows in `ps` and shell history: only $SLAM_KFP_TOKEN is read
    p.add_argument("--token", default="", help=argparse.SUPPRESS)


def _host_args(args: argparse.Namespace) -> dict:
    """namespace/token for kfp_client, checked before the host is contacted."""
    from slam import k8s_values as kv
    from slam.errors import SlamError

    if args.token:
        raise SlamError(f"--token on the command line is visible to other users (ps, shell history): "
                        f"export {kfp_client.TOKEN_ENV} instead (nothing was sent)")
    kv.check(kv.namespace_problem(args.namespace) if args.namespace else None)
    return {"namespace": args.namespace}


def register_pipeline(sub: argparse._SubParsersAction) -> None:
    _, ps = group(sub, "pipeline", help="compile, submit, schedule or locally run the Kubeflow pipeline",
                  examples=["slam pipeline params",
                            "slam pipeline submit --host URL languages=en,de,sw storage=s3://b/runs launcher=kuberay"])

    c = command(ps, "compile", help="compile the DAG to KFP IR YAML",
                examples=["slam pipeline compile --out pipeline.yaml --gpu --node-selector pool=gpu"])
    c.add_argument("--out", default="pipeline.yaml", help="output YAML")
    _add_compile_opts(c)
    c.set_defaults(func=run_compile)

    pr = command(ps, "params", help="list the pipeline parameters with types, defaults and what each does",
                 examples=["slam pipeline params"])
    pr.set_defaults(func=run_params)

    s = command(ps, "submit", help="start one run on a Kubeflow Pipelines endpoint",
                description="Compiles the DAG (or takes --package) and starts a run; prints the run id and URL. "
                            f"Positional arguments: {ARGS_HELP}.",
                examples=["slam pipeline submit --host https://kubeflow.example.com/pipeline languages=sw,th "
                          "storage=s3://b/runs mlflow_uri=http://mlflow.mlflow:5000 launcher=kuberay",
                          "slam pipeline submit --host URL train.max_steps=500 tune_overrides=tune.max_steps=20"])
    _add_host(s)
    s.add_argument("--experiment", default="slam", help="KFP experiment (created if missing)")
    s.add_argument("--run-name", default="", help="default: slam-<languages>-<timestamp>")
    s.add_argument("--package", help="a compiled YAML to submit (default: compile now)")
    _add_compile_opts(s)
    _add_params(s)
    s.set_defaults(func=run_submit)

    sc = command(ps, "schedule", help="create a recurring run (6-field cron, seconds first)",
                 description="With languages_uri the run watches a location with one folder per language: each "
                             "tick trains only when a folder appeared that the champion was not trained on, and "
                             "the per-language gate decides the alias (README: new-language retraining).",
                 examples=['slam pipeline schedule --host URL --cron "0 0 3 * * *" languages_uri=s3://b/languages '
                           'storage=s3://b/runs mlflow_uri=http://mlflow.mlflow:5000',
                           'slam pipeline schedule --host URL --cron "0 0 3 * * 1" languages=en,sw,th'])
    _add_host(sc)
    sc.add_argument("--cron", required=True, help='e.g. "0 0 3 * * 1" = Mondays 03:00:00')
    sc.add_argument("--name", default="", help="recurring run name (default: slam-<languages> or slam-watch-<uri>)")
    sc.add_argument("--experiment", default="slam", help="KFP experiment")
    sc.add_argument("--max-concurrency", type=int, default=1, help="runs of this schedule at once")
    sc.add_argument("--catchup", action="store_true", help="backfill missed intervals (default: no)")
    sc.add_argument("--package", help="a compiled YAML (default: compile now)")
    _add_compile_opts(sc)
    _add_params(sc)
    sc.set_defaults(func=run_schedule)

    ls = command(ps, "schedules", help="list recurring runs, or disable/enable/delete one",
                 examples=["slam pipeline schedules --host URL", "slam pipeline schedules --host URL --disable ID"])
    _add_host(ls)
    ls.add_argument("--experiment", default="", help="only this experiment's")
    g = ls.add_mutually_exclusive_group()
    g.add_argument("--disable", metavar="ID", help="pause this recurring run")
    g.add_argument("--enable", metavar="ID", help="resume this recurring run")
    g.add_argument("--delete", metavar="ID", help="delete this recurring run")
    ls.set_defaults(func=run_schedules)

    r = command(ps, "run", help="run the whole DAG here through kfp.local (no cluster)",
                description="The same compiled DAG a cluster runs, with every step a local process. The console "
                            "shows one line per step and progress with ETAs (--verbose: everything); all output "
                            "is kept under <root>/logs.",
                examples=["slam pipeline run storage=runs/local languages=en,de synth_problems=100",
                          "slam pipeline run languages_uri=runs/languages mlflow_uri=sqlite:///runs/mlflow.db"])
    r.add_argument("--root", default="runs/kfp-local", help="kfp.local pipeline root (task outputs, logs)")
    _add_params(r)
    r.set_defaults(func=run_local)


def run_compile(args: argparse.Namespace) -> int:
    print(kfp_client.compile_pipeline(args.out, _opts(args)))
    return 0


def run_params(args: argparse.Namespace) -> int:
    import textwrap

    for name, spec in kfp_client.pipeline_inputs().items():
        print(f"{name}={json.dumps(spec.default) if spec.type == 'List' else spec.default}   ({spec.type})")
        for line in textwrap.wrap(spec.description or "", 96):
            print(f"    {line}")
    print("\nAny config key works too, as section.key=value (train.*, tune.*, data.*): it goes to the Tune trials "
          "and the training run.")
    return 0


def run_submit(args: argparse.Namespace) -> int:
    host = _host_args(args)
    out = kfp_client.submit(args.host, kfp_client.parse_params(args.params), experiment=args.experiment,
                            run_name=args.run_name, package=args.package, opts=_opts(args), **host)
    print(json.dumps(out, indent=2))
    return 0


def run_schedule(args: argparse.Namespace) -> int:
    host = _host_args(args)
    kfp_client.check_schedule(args.cron, args.max_concurrency)  # before compiling anything
    out = kfp_client.schedule(args.host, args.cron, kfp_client.parse_params(args.params), name=args.name,
                              experiment=args.experiment, package=args.package, opts=_opts(args),
                              max_concurrency=args.max_concurrency, catchup=args.catchup, **host)
    print(json.dumps(out, indent=2))
    return 0


def run_schedules(args: argparse.Namespace) -> int:
    host = _host_args(args)
    for action in ("disable", "enable", "delete"):
        rid = getattr(args, action)
        if rid:
            kfp_client.set_schedule(args.host, rid, action, **host)
            print(f"{action}d {rid}")
            return 0
    rows = kfp_client.list_schedules(args.host, experiment=args.experiment, **host)
    if not rows:
        print("no recurring runs")
    for r in rows:
        print(f"{r['id']}  {r['name']:30s} {r['cron']:18s} {r['mode']}")
    return 0


def run_local(args: argparse.Namespace) -> int:
    from pipeline.local import run_local as run
    from pipeline.local import task_outputs

    out = run(kfp_client.parse_params(args.params), args.root, verbose=args.verbose)
    outputs = task_outputs(out["run_dir"])
    reg = outputs.get("register-model", {}).get("parameters", {})
    if reg:
        print(f"registered: version {reg.get('version')} ({reg.get('alias') or 'no alias'})")
    elif "prepare-data" in outputs:
        print("nothing new to train: the pipeline stopped after prepare-data")
    print(json.dumps({**out, "registered": reg}, indent=2))
    return 0


def register_demo(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "demo", help="run the whole Kubeflow pipeline locally on the embedded defaults",
                description="SmolLM2-135M-Instruct on the synthetic multilingual world: data, probe, Ray Tune over "
                            "k, Ray Train + DeepSpeed, base vs SLAM evaluation, MLflow registry; kfp.local, local "
                            "Ray, MLflow sqlite. Prints one line per step with progress and ETAs, then accuracy per "
                            "language, the model version, the MLflow links and the `slam runs compare` command.",
                examples=["slam demo --quick", "slam demo --storage s3://bucket/demo",
                          "slam demo train.max_steps=30 synth_problems=120", "slam --verbose demo --quick"])
    p.add_argument("--quick", action="store_true", help="reduced run (fewer languages/steps/questions; what CI runs)")
    p.add_argument("--real", action="store_true",
                   help="real data: build GSM8K CoT + QAlign translations + MGSM test (--shared-data), evaluate on MGSM")
    p.add_argument("--shared-data", default="", help="--real: dir or s3:// prefix holding gsm8k/, qalign_gsmtrans/, mgsm/")
    p.add_argument("--out", default="runs/demo", help="output dir: storage, kfp task outputs, MLflow, logs")
    p.add_argument("--storage", default="", help="artifact storage instead of <out>/storage (e.g. s3://bucket/demo)")
    p.add_argument("--mlflow-uri", default="", help="MLflow tracking URI (default: sqlite under <out>/mlflow)")
    _add_params(p)
    p.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    params = [x for x in args.params if "." not in x.partition("=")[0]]
    overrides = [x for x in args.params if "." in x.partition("=")[0]]
    named = {k.replace("-", "_"): v for k, v in parse_key_values(params, "parameter").items()}
    run_demo(args.out, quick=args.quick, storage=args.storage, mlflow_uri=args.mlflow_uri, params=named,
             overrides=overrides, verbose=args.verbose, real=args.real, shared_data=args.shared_data)
    return 0
