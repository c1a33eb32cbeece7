"""`slam launch` — run a `slam` step on a cluster: as a KubeRay RayJob, or on an existing Ray cluster.

    slam launch rayjob --print --storage s3://bucket/run --run-id RUN --step train --workers 2 \\
        --gpus-per-worker 1 --toleration nvidia.com/gpu:NoSchedule -- slam train --config s3://bucket/run/config.yaml
    slam launch rayjob --namespace slam --storage s3://bucket/run --run-id RUN --step train … -- slam train …
    slam launch submit --address http://127.0.0.1:8265 --storage s3://bucket/run --run-id RUN --step train -- slam train …

Everything after `--` is the step's own command line. It is written as a step spec to
`<storage>/launch/<name>/step.json`, and the job runs the constant entrypoint `python -m slam.launch.entry`,
which reads it: no part of the command line is ever parsed by a shell on the cluster. The same run id +
step always maps to the same RayJob / submission id, so running the command again re-attaches.
"""

from __future__ import annotations

import argparse
import json

from slam.config import parse_key_values
from slam.errors import SlamError


def _kv(text: str) -> tuple[str, str]:
    try:
        ((k, v),) = parse_key_values([text]).items()
    except SlamError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return k, v


def _checked(problem_of):
    """An argparse type from a slam.k8s_values check: the bad value is one usage-error line."""
    def convert(text: str) -> str:
        problem = problem_of(text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text
    return convert


def _node_selector(text: str) -> tuple[str, str]:
    from slam.k8s_values import label_problem

    k, v = _kv(text)
    problem = label_problem(k, v, "node selector")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return k, v


def _env(text: str) -> tuple[str, str]:
    """KEY=VALUE for pods/jobs: a value carrying a credential would be written into the spec (visible to
    anyone who can read RayJobs or the Ray dashboard), so it is refused."""
    from slam.redact import carries_credentials

    k, v = _kv(text)
    why = carries_credentials(v)
    if why:
        raise argparse.ArgumentTypeError(f"--env {k}: the value carries {why}; give credentials to the pods from "
                                         "a Kubernetes Secret, never inline")
    return k, v


def _positive(kind):
    def convert(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not v > 0 or v != v or v == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
        return v
    return convert


def _toleration(text: str) -> dict[str, str]:
    """`key[=value]:Effect` -> a toleration (Exists when no value is given)."""
    key, _, effect = text.partition(":")
    if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise argparse.ArgumentTypeError(f"toleration {text!r}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute")
    from slam.k8s_values import label_problem

    k, _, v = key.partition("=")
    problem = label_problem(k, v, "toleration")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    if "=" in key:
        return {"key": k, "operator": "Equal", "value": v, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def _command(args: argparse.Namespace) -> list[str]:
    """The `slam <step> …` argv after `--`, without the leading "slam" (what the step spec carries)."""
    from slam.launch.entry import check_argv

    cmd = list(args.step_command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise SlamError("no step command: put it after `--`, e.g. -- slam train --config s3://bucket/config.yaml")
    if cmd[0] != "slam":
        raise SlamError(f"the step command must be `slam <step> …`, got {cmd[0][:40]!r}")
    return check_argv(cmd[1:])


def _spec_uri(storage_root: str, name: str) -> str:
    from slam import storage
    from slam.launch import validate

    return validate.s3_uri(storage.join(validate.s3_uri(storage_root, "--storage"), "launch", name, "step.json"),
                           "step spec URI")


def register(sub: argparse._SubParsersAction) -> None:
    from slam import k8s_values as kv
    from slam.commands import command, group

    _, lsub = group(sub, "launch", help="run a step on Kubernetes (KubeRay RayJob) or an existing Ray cluster",
                    metavar="<target>", examples=["slam launch rayjob --print --run-id R --step train -- slam train "
                                                  "--config s3://bucket/cfg.yaml"])

    r = command(lsub, "rayjob", help="create (or re-attach to) a KubeRay RayJob and wait for it",
                description="The same run id + step always maps to the same RayJob name: running the command again "
                            "re-attaches instead of starting a duplicate. Everything after `--` is the step's own "
                            "command line.",
                examples=["slam launch rayjob --print --run-id R --step train --workers 2 -- slam train --config "
                          "s3://bucket/run/config.yaml",
                          "slam launch rayjob --namespace slam --run-id R --step train -- slam train --config s3://b/c.yaml"])
    r.add_argument("--run-id", required=True, help="KFP run id (names the RayJob deterministically)")
    r.add_argument("--step", required=True, help="pipeline step name, e.g. train or tune")
    r.add_argument("--namespace", default="slam", type=_checked(kv.namespace_problem),
                   help="Kubernetes namespace of the RayJob")
    r.add_argument("--storage", required=True, metavar="S3_PREFIX",
                   help="where the step spec goes (<storage>/launch/<name>/step.json); the pods read it")
    r.add_argument("--print", action="store_true", help="print the RayJob YAML and exit (no cluster needed)")
    r.add_argument("--image", default=None, help="project image (default: RayJobSettings.image)")
    r.add_argument("--workers", type=int, default=1, help="Ray worker pods (= Ray Train workers)")
    r.add_argument("--gpus-per-worker", type=int, default=0, help="GPUs each worker pod requests")
    r.add_argument("--cpus-per-worker", default="4", type=_checked(kv.quantity_problem),
                   help="CPU request/limit per worker pod (k8s quantity)")
    r.add_argument("--memory-per-worker", default="16Gi", type=_checked(kv.quantity_problem),
                   help="memory request/limit per worker pod (k8s quantity)")
    r.add_argument("--shm-size", default="8Gi", help="/dev/shm size for NCCL", type=_checked(kv.quantity_problem))
    r.add_argument("--node-selector", type=_node_selector, action="append", default=[], metavar="KEY=VALUE",
                   help="node label the pods must run on (repeatable)")
    r.add_argument("--toleration", type=_toleration, action="append", default=[], metavar="KEY[=VALUE]:EFFECT",
                   help="taint the pods tolerate (repeatable)")
    r.add_argument("--queue", default="", help="Kueue LocalQueue (the job is created suspended)")
    r.add_argument("--output", type=_kv, action="append", default=[], metavar="NAME=S3_URI",
                   help="an output the job writes; checked to exist after success and printed")
    r.add_argument("--env", type=_env, action="append", default=[], metavar="KEY=VALUE",
                   help="non-secret env for the pods (secrets come from k8s Secrets)")
    r.add_argument("--active-deadline", type=_positive(int), default=24 * 3600,
                   help="seconds the job may run; then the launcher deletes it (and KubeRay marks it Failed)")
    r.add_argument("--ttl", type=_positive(int), default=None, help="seconds a finished cluster stays (default 120)")
    r.add_argument("--timeout", type=_positive(float), default=None,
                   help="seconds to wait (default: active deadline + 1 min)")
    r.add_argument("--start-timeout", type=_positive(float), default=1800.0,
                   help="seconds to wait for the job to start")
    r.add_argument("--poll", type=_positive(float), default=10.0, help="seconds between status polls")
    r.add_argument("step_command", nargs=argparse.REMAINDER, help="-- slam <step> …")
    r.set_defaults(func=run_rayjob)

    s = command(lsub, "submit", help="submit to an existing Ray cluster (Ray Job Submission API) and wait",
                examples=["slam launch submit --address http://127.0.0.1:8265 --run-id R --step train -- slam train "
                          "--config c.yaml"])
    s.add_argument("--address", required=True, help="Ray dashboard URL, e.g. http://127.0.0.1:8265")
    s.add_argument("--storage", required=True, metavar="S3_PREFIX",
                   help="where the step spec goes (<storage>/launch/<id>/step.json); the cluster reads it")
    s.add_argument("--run-id", default=None, help="KFP run id (with --step: derives the submission id)")
    s.add_argument("--step", default=None, help="pipeline step name (with --run-id: derives the submission id)")
    s.add_argument("--submission-id", default=None, help="explicit submission id (instead of --run-id/--step)")
    s.add_argument("--env", type=_env, action="append", default=[], metavar="KEY=VALUE",
                   help="non-secret env for the job (repeatable)")
    s.add_argument("--timeout", type=_positive(float), default=24 * 3600.0, help="seconds to wait for the job")
    s.add_argument("--poll", type=_positive(float), default=2.0, help="seconds between status polls")
    s.add_argument("step_command", nargs=argparse.REMAINDER, help="-- slam <step> …")
    s.set_defaults(func=run_submit)


def run_rayjob(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from slam.launch.kuberay import RayJobRunner
    from slam.launch.rayjob import ClusterShape, RayJobSettings, build_rayjob, rayjob_name

    settings = RayJobSettings(active_deadline_seconds=args.active_deadline, queue=args.queue)
    if args.image:
        settings = dataclasses.replace(settings, image=args.image)
    if args.ttl is not None:
        settings = dataclasses.replace(settings, ttl_seconds_after_finished=args.ttl)
    shape = ClusterShape(num_workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                         cpus_per_worker=args.cpus_per_worker, memory_per_worker=args.memory_per_worker,
                         shm_size=args.shm_size, node_selector=dict(args.node_selector),
                         tolerations=list(args.toleration))
    name = rayjob_name(args.run_id, args.step)
    argv, spec_uri = _command(args), _spec_uri(args.storage, name)
    body = build_rayjob(name, spec_uri, shape=shape, settings=settings, namespace=args.namespace,
                        run_id=args.run_id, step=args.step, outputs=dict(args.output), extra_env=dict(args.env))
    if args.print:
        print(yaml.safe_dump(body, sort_keys=False), end="")
        return 0
    from slam.launch.entry import write_spec
    from slam.launch.kubeapi import KubeApi

    write_spec(spec_uri, argv)
    runner = RayJobRunner(KubeApi.from_environment(), args.namespace, poll_s=args.poll, echo=print)
    res = runner.run(body, timeout_s=args.timeout, start_timeout_s=args.start_timeout)
    print(json.dumps({"rayjob": res.name, "status": res.job_status, "reattached": res.reattached,
                      "outputs": res.outputs, "elapsed_s": round(res.elapsed_s, 1)}))
    return 0


def run_submit(args: argparse.Namespace) -> int:
    from slam.distributed.job_submission import JobSubmissionRunner, submission_id_for

    if args.submission_id:
        sid = args.submission_id
    elif args.run_id and args.step:
        sid = submission_id_for(args.run_id, args.step)
    else:
        raise SlamError("give --submission-id, or --run-id and --step (a stable id makes retries re-attach)")
    from slam.launch.entry import write_spec

    spec_uri = write_spec(_spec_uri(args.storage, sid), _command(args))
    res = JobSubmissionRunner(args.address, poll_s=args.poll, echo=print).run_spec(
        spec_uri, sid, timeout_s=args.timeout, env=dict(args.env))
    print(json.dumps({"submission_id": res.submission_id, "status": res.status, "reattached": res.reattached,
                      "elapsed_s": round(res.elapsed_s, 1)}))
    return 0
