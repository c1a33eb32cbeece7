"""`slam pipeline …` and `slam demo`: the Kubeflow pipeline from the command line.

    slam pipeline compile --out pipeline.yaml --gpu --node-selector pool=gpu --toleration nvidia.com/gpu
    slam pipeline submit --host https://kfp.example.com -p languages=sw,th -p storage=s3://bucket/runs
    slam pipeline schedule --host URL --cron "0 0 3 * * 1" --languages sw,th
    slam pipeline schedules --host URL [--disable ID]
    slam pipeline run --storage runs/local -p synth_problems=100     # whole DAG here via kfp.local
    slam demo [--quick] [--out runs/demo] [--storage s3://bucket/demo]

These subcommands live with the pipeline (they need kfp); the `slam` CLI finds them through the
`slam.commands` entry points declared in pyproject.toml, so the library itself never imports upward.
"""

from __future__ import annotations

import argparse
import json

from pipeline import kfp_client
from slam.config import parse_key_values


def _opts(args: argparse.Namespace):
    from pipeline.pipeline import CompileOptions

    selector = parse_key_values(getattr(args, "node_selector", None), "--node-selector")
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
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="pipeline parameter (repeatable); see `slam pipeline params`")
    p.add_argument("--languages", help="shortcut for -p languages=…")
    p.add_argument("--storage", help="shortcut for -p storage=… (local dir or s3://bucket/prefix)")
    p.add_argument("--base-model", help="shortcut for -p base_model=…")
    p.add_argument("--launcher", choices=["local", "kuberay"], help="shortcut for -p launcher=…")
    p.add_argument("--mlflow-uri", help="shortcut for -p mlflow_uri=…")


def _params(args: argparse.Namespace) -> dict:
    return kfp_client.parse_params(args.param, languages=args.languages, storage=args.storage,
                               base_model=args.base_model, launcher=args.launcher, mlflow_uri=args.mlflow_uri)


def _add_host(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")
    p.add_argument("--namespace", default="", help="Kubeflow profile namespace (multi-user KFP)")
    p.add_argument("--token", default="", help="bearer token (else kfp.Client's own auth discovery)")


def register_pipeline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="compile, submit, schedule or locally run the Kubeflow pipeline")
    ps = p.add_subparsers(dest="pipeline_command", metavar="<action>", required=True)

    c = ps.add_parser("compile", help="compile the DAG to KFP IR YAML")
    c.add_argument("--out", default="pipeline.yaml", help="output YAML (default: pipeline.yaml)")
    _add_compile_opts(c)
    c.set_defaults(func=run_compile)

    pr = ps.add_parser("params", help="list the pipeline parameters with types and defaults")
    pr.set_defaults(func=run_params)

    s = ps.add_parser("submit", help="start one run on a Kubeflow Pipelines endpoint")
    _add_host(s)
    s.add_argument("--experiment", default="slam", help="KFP experiment (created if missing)")
    s.add_argument("--run-name", default="", help="default: slam-<languages>-<timestamp>")
    s.add_argument("--package", help="a compiled YAML to submit (default: compile now)")
    _add_compile_opts(s)
    _add_params(s)
    s.set_defaults(func=run_submit)

    sc = ps.add_parser("schedule", help="create a recurring run (6-field cron, seconds first)")
    _add_host(sc)
    sc.add_argument("--cron", required=True, help='e.g. "0 0 3 * * 1" = Mondays 03:00:00')
    sc.add_argument("--name", default="", help="recurring run name (default: slam-<languages>)")
    sc.add_argument("--experiment", default="slam")
    sc.add_argument("--max-concurrency", type=int, default=1)
    sc.add_argument("--catchup", action="store_true", help="backfill missed intervals (default: no)")
    sc.add_argument("--package", help="a compiled YAML (default: compile now)")
    _add_compile_opts(sc)
    _add_params(sc)
    sc.set_defaults(func=run_schedule)

    ls = ps.add_parser("schedules", help="list recurring runs, or disable/enable/delete one")
    _add_host(ls)
    ls.add_argument("--experiment", default="", help="only this experiment's")
    g = ls.add_mutually_exclusive_group()
    g.add_argument("--disable", metavar="ID")
    g.add_argument("--enable", metavar="ID")
    g.add_argument("--delete", metavar="ID")
    ls.set_defaults(func=run_schedules)

    r = ps.add_parser("run", help="run the whole DAG here through kfp.local (no cluster)")
    r.add_argument("--root", default="runs/kfp-local", help="kfp.local pipeline root (task outputs, logs)")
    _add_params(r)
    r.set_defaults(func=run_local)


def run_compile(args: argparse.Namespace) -> int:
    print(kfp_client.compile_pipeline(args.out, _opts(args)))
    return 0


def run_params(args: argparse.Namespace) -> int:
    for name, spec in kfp_client.pipeline_inputs().items():
        print(f"{name:22s} {spec.type:8s} {spec.default!r}")
    return 0


def run_submit(args: argparse.Namespace) -> int:
    out = kfp_client.submit(args.host, _params(args), experiment=args.experiment, run_name=args.run_name,
                        package=args.package, opts=_opts(args), namespace=args.namespace, token=args.token)
    print(json.dumps(out, indent=2))
    return 0


def run_schedule(args: argparse.Namespace) -> int:
    kfp_client.validate_cron(args.cron)  # before compiling anything
    out = kfp_client.schedule(args.host, args.cron, _params(args), name=args.name, experiment=args.experiment,
                       package=args.package, opts=_opts(args), namespace=args.namespace, token=args.token,
                       max_concurrency=args.max_concurrency, catchup=args.catchup)
    print(json.dumps(out, indent=2))
    return 0


def run_schedules(args: argparse.Namespace) -> int:
    for action in ("disable", "enable", "delete"):
        rid = getattr(args, action)
        if rid:
            kfp_client.set_schedule(args.host, rid, action, namespace=args.namespace, token=args.token)
            print(f"{action}d {rid}")
            return 0
    rows = kfp_client.list_schedules(args.host, experiment=args.experiment, namespace=args.namespace, token=args.token)
    if not rows:
        print("no recurring runs")
    for r in rows:
        print(f"{r['id']}  {r['name']:30s} {r['cron']:18s} {r['mode']}")
    return 0


def run_local(args: argparse.Namespace) -> int:
    from pipeline.local import run_local as run

    out = run(_params(args), args.root)
    print(json.dumps(out, indent=2))
    return 0


def register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole Kubeflow pipeline locally on the embedded defaults")
    p.add_argument("--quick", action="store_true", help="reduced run (fewer languages/steps/questions; what CI runs)")
    p.add_argument("--out", default="runs/demo", help="output dir: storage, kfp task outputs, MLflow (default runs/demo)")
    p.add_argument("--storage", default="", help="artifact storage instead of <out>/storage (e.g. s3://bucket/demo)")
    p.add_argument("--mlflow-uri", default="", help="MLflow tracking URI (default: sqlite under <out>/mlflow)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="override a pipeline parameter (see `slam pipeline params`)")
    p.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    params = {k.replace("-", "_"): v for k, v in parse_key_values(args.param, "--param").items()}
    run_demo(args.out, quick=args.quick, storage=args.storage, mlflow_uri=args.mlflow_uri, params=params)
    return 0
