"""Ray Tune over SLAM's most sensitive knob: k, how many of the probe's top-ranked layers to tune (plus lr, selection).

    from slam.distributed.tune import tune_search
    outcome = tune_search(cfg)                    # cfg.tune: k_grid, lr_grid, selections, search, max_steps, asha
    slam tune --config configs/smollm2-demo.yaml --set tune.k_grid=[2,4,6]

Each trial is a reduced-budget SLAM training run: a function trainable that calls
`slam.distributed.train.fit` (a TorchTrainer) with `TuneReportCallback` — Ray 2.60's Train V2 rejects
`Tuner(TorchTrainer)`. Layers per trial come from the probe report (`slam.probe.select_layers`). Trial
and run names are derived from the search point, so re-running the same search resumes it
(`Tuner.restore`) and a restarted trial resumes its training run from its last checkpoint.
Results (best.json, results.csv/json, tune.png) are written to storage before anything is logged to
MLflow, so an MLflow outage never loses them. MLflow: one `tune` run, each trial's training run nested
under it (via tracking.parent = its run key). The console shows one progress line per finished trial
with an ETA; Tune's status tables only with SLAM_VERBOSE=1.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slam import storage
from slam.config import SlamConfig, from_dict, to_dict
from slam.errors import SlamError

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["trial", "k", "selection", "lr", "layers", "status", "steps", "train_loss", "val_loss",
                  "val_accuracy", "val_accuracy_non_en", "val_accuracy_en", "trainable_fraction", "wall_time", "run_dir"]
ACCURACY_METRICS = ("val_accuracy", "val_accuracy_non_en")


@dataclass(frozen=True)
class TuneOutcome:
    best: dict[str, Any]
    """k, layers, lr, selection, metric name and value, the trial's run dir and delta."""
    rows: list[dict[str, Any]]
    out_uri: str
    """Where best.json, results.csv, results.json and tune.png were written."""
    experiment_path: str
    parent_run_id: str


def search_points(cfg: SlamConfig, report: dict) -> list[dict[str, Any]]:
    """The trials, in a fixed order: grid = k x lr x selection x num_samples; random = a seeded sample."""
    from slam.probe import select_layers
    from slam.probe.select import tune_selections

    tc = cfg.tune
    lrs = tc.lr_grid or [cfg.train.lr]
    n_layers = len(report.get("scores") or [])
    bad = [k for k in tc.k_grid if not 1 <= k <= n_layers]
    if bad:
        raise SlamError(f"tune.k_grid: {bad} outside 1..{n_layers} (the probed model has {n_layers} layers)")
    grid = list(itertools.product(tc.k_grid, lrs, tune_selections(tc.selections, report)))
    if tc.search == "random":
        combos = [(k, lr, sel, 0) for k, lr, sel in
                  random.Random(cfg.tune.seed).sample(grid, min(tc.num_samples, len(grid)))]
    else:
        combos = [(k, lr, sel, rep) for rep in range(tc.num_samples) for k, lr, sel in grid]
    points = []
    for k, lr, sel, rep in combos:
        points.append({"k": k, "lr": lr, "selection": sel, "rep": rep, "layers": select_layers(report, k, sel),
                       "trial": f"k{k}-{sel}-lr{lr:g}" + (f"-r{rep}" if rep else "")})
    return points


def _search_name(cfg: SlamConfig) -> str:
    """cfg.tune.name, or a hash of what defines the search (so an identical re-run resumes it)."""
    if cfg.tune.name:
        return cfg.tune.name
    from slam.train.runs import data_fingerprint

    d = {"tune": to_dict(cfg.tune), "model": cfg.model.path, "probe": cfg.train.probe, "data": to_dict(cfg.data),
         "train": {k: v for k, v in to_dict(cfg.train).items()
                   if k not in ("num_workers", "use_gpu", "cpus_per_worker", "max_failures", "run_name")}}
    h = storage.fingerprint_bytes(json.dumps(d, sort_keys=True).encode(), data_fingerprint(cfg.data.train).encode())
    return f"tune-{h[:10]}"


def _trial_cfg(cfg: SlamConfig, point: dict[str, Any], name: str, parent_key: str) -> dict[str, Any]:
    tc, t = cfg.tune, cfg.train
    report_every = max(1, min(t.report_every, tc.max_steps))
    accuracy = tc.metric in ACCURACY_METRICS
    return to_dict(cfg.replace(
        train={"layers": point["layers"], "lr": point["lr"], "max_steps": tc.max_steps, "seed": t.seed + point["rep"],
               "report_every": report_every,
               # ASHA (val_loss only) compares trials on intermediate reports: the metric must be in them; an
               # accuracy is ranked on the final report only (greedy generation is the expensive part)
               "val_every": report_every if tc.metric == "val_loss" else t.val_every,
               "val_accuracy_every": 0 if accuracy else t.val_accuracy_every,
               "val_accuracy_limit": (t.val_accuracy_limit or tc.val_accuracy_limit) if accuracy else t.val_accuracy_limit,
               "run_name": f"{name}-{point['trial']}", "method": "slam"},
        tracking={"parent": parent_key}))


def _trial(config: dict[str, Any], cfgs: dict[str, dict], trials_root: str, num_workers: int) -> None:
    """One Tune trial = one reduced-budget SLAM training run on Ray Train (runs inside a Tune actor)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from slam.distributed.train import fit

    cfg = from_dict(SlamConfig, cfgs[config["point"]["trial"]])
    fit(cfg, num_workers=num_workers, storage=trials_root, callbacks=[TuneReportCallback()])


def _max_concurrent(cfg: SlamConfig, num_workers: int) -> int:
    import ray

    if cfg.tune.max_concurrent_trials:
        return cfg.tune.max_concurrent_trials
    res = ray.cluster_resources()
    if cfg.train.use_gpu:
        return max(1, int(res.get("GPU", 0) // num_workers))
    # a trial's driver takes 0.01 CPU on top of its workers
    return max(1, int(res.get("CPU", 1) // (num_workers * cfg.train.cpus_per_worker + 0.01)))


def _init_ray(ray_address: str | None) -> None:
    from slam.distributed.train import init_ray

    # Reports at checkpoint steps may lack val_loss; the ASHA scheduler skips those, Tune must not fail on them.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    init_ray(ray_address, num_cpus=os.cpu_count() or 1)


def _rows(results: Any, points: dict[str, dict], max_steps: int, run_dirs: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        p = points[r.config["point"]["trial"]]
        m = r.metrics or {}
        steps = m.get("step")
        status = "error" if r.error else ("complete" if steps == max_steps and "delta_uri" in m else "stopped")
        rows.append({"trial": p["trial"], "k": p["k"], "selection": p["selection"], "lr": p["lr"],
                     "layers": p["layers"], "status": status, "steps": steps, "train_loss": m.get("train_loss"),
                     "val_loss": m.get("val_loss"), "val_accuracy": m.get("val_accuracy"),
                     "val_accuracy_non_en": m.get("val_accuracy_non_en"), "val_accuracy_en": m.get("val_accuracy_en"),
                     "trainable_fraction": m.get("trainable_fraction"), "wall_time": m.get("wall_time"),
                     "run_dir": run_dirs[p["trial"]], "delta_uri": m.get("delta_uri")})
    order = {name: i for i, name in enumerate(points)}
    return sorted(rows, key=lambda row: order[row["trial"]])


def pick_best(rows: list[dict[str, Any]], metric: str, english_tolerance: float | None = None) -> dict[str, Any]:
    """Best completed trial by `metric` (min loss / max accuracy); trials ASHA stopped only if none completed.

    English guard (accuracy metrics, english_tolerance set): a trial whose English validation accuracy is
    more than `english_tolerance` below the best English among the candidates is not eligible, so a k
    that buys other languages by losing English does not win. Ties go to the smaller k (fewer parameters)."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and not math.isnan(r[metric])]
    done = [r for r in scored if r["status"] == "complete"] or scored
    if not done:
        raise SlamError(f"no Tune trial reported {metric}: see the trial errors in the results table")
    en = [r["val_accuracy_en"] for r in done if isinstance(r.get("val_accuracy_en"), (int, float))]
    if english_tolerance is not None and metric in ACCURACY_METRICS and en:
        guarded = [r for r in done if isinstance(r.get("val_accuracy_en"), (int, float))
                   and r["val_accuracy_en"] >= max(en) - english_tolerance - 1e-12]
        done = guarded or done
    sign = 1 if metric.endswith("loss") else -1
    return min(done, key=lambda r: (sign * r[metric], r["k"]))


def all_tied(rows: list[dict[str, Any]], metric: str) -> bool:
    """More than one trial scored and all scored the same: no signal (e.g. accuracy 0 everywhere after a
    few steps), so the pick is the tie rule's, not evidence."""
    values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float)) and not math.isnan(r[metric])]
    return len(values) > 1 and max(values) - min(values) < 1e-12


def write_outputs(rows: list[dict[str, Any]], best: dict[str, Any], metric: str, out_uri: str) -> None:
    """best.json, results.json, results.csv and tune.png (metric vs k) under out_uri, all at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory(prefix="slam-tune-") as tmp:
        d = Path(tmp)
        (d / "best.json").write_text(json.dumps(best, indent=2, default=str) + "\n")
        (d / "results.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows({**r, "layers": " ".join(map(str, r["layers"]))} for r in rows)
        (d / "results.csv").write_text(buf.getvalue())
        fig, ax = plt.subplots(figsize=(6, 4))
        for (sel, lr), group in itertools.groupby(sorted(rows, key=lambda r: (r["selection"], r["lr"], r["k"])),
                                                  key=lambda r: (r["selection"], r["lr"])):
            pts = [(r["k"], r[metric]) for r in group if isinstance(r.get(metric), (int, float))]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{sel}, lr={lr:g}")
        ax.axvline(best["k"], color="grey", linestyle=":", label=f"best k={best['k']}")
        ax.set_xlabel("k (layers tuned)")
        ax.set_ylabel(metric)
        ax.set_title("SLAM: validation metric vs number of tuned layers")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(d / "tune.png", dpi=100)
        plt.close(fig)
        storage.publish_dir(d, out_uri)


def _check(cfg: SlamConfig) -> None:
    tc, problems = cfg.tune, []
    if not cfg.train.probe:
        problems.append("train.probe is empty: Tune picks each trial's layers from a probe.json (`slam probe`)")
    if tc.metric in ACCURACY_METRICS and not (cfg.train.val_accuracy_limit or tc.val_accuracy_limit):
        problems.append(f"tune.metric={tc.metric} needs tune.val_accuracy_limit (or train.val_accuracy_limit) > 0 "
                        "(questions per language)")
    if tc.max_steps <= 0 or tc.num_samples <= 0:
        problems.append("tune.max_steps and tune.num_samples must be > 0")
    if problems:
        raise SlamError("cannot tune: " + "; ".join(problems))


def _tuner(cfg: SlamConfig, points: dict[str, dict], trainable: Any, name: str, root: str, num_workers: int) -> Any:
    """A new Tuner over the points, or the interrupted search restored from storage (trials resume)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    tc = cfg.tune
    experiment_path = storage.join(root, name)
    if tune.Tuner.can_restore(experiment_path):
        log.info("resuming Tune search %s from %s", name, experiment_path)
        return tune.Tuner.restore(experiment_path, trainable=trainable, resume_errored=True)
    # ASHA's rungs count reports: one at each multiple of report_every below max_steps, plus the final one
    n_reports = math.ceil(tc.max_steps / max(1, min(cfg.train.report_every, tc.max_steps)))
    use_asha = tc.asha and tc.metric == "val_loss" and len(points) > 1
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=n_reports,
                               grace_period=min(tc.grace_period, n_reports), reduction_factor=2)
                 if use_asha else FIFOScheduler())
    log.info("Tune search %s: %d trials (%s), metric %s, %s", name, len(points), tc.search, tc.metric,
             "ASHA" if use_asha else "no early stopping")
    return tune.Tuner(
        trainable,
        param_space={"point": tune.grid_search([{"trial": t} for t in points])},
        tune_config=tune.TuneConfig(metric=tc.metric, mode="min" if tc.metric.endswith("loss") else "max",
                                    scheduler=scheduler, max_concurrent_trials=_max_concurrent(cfg, num_workers),
                                    trial_name_creator=lambda t: t.config["point"]["trial"],
                                    trial_dirname_creator=lambda t: t.config["point"]["trial"]),
        run_config=tune.RunConfig(name=name, storage_path=root, verbose=1 if os.environ.get("SLAM_VERBOSE") else 0,
                                  callbacks=[_trial_progress(len(points))]),
    )


def _log_results(tracker: Any, parent: Any, rows: list[dict], cfgs: dict[str, dict], best: dict, metric: str,
                 out_uri: str) -> None:
    """The search's view on MLflow: each trial's own training run (nested) and the parent's best + files."""
    for row in rows:
        with tracker.run(row["trial"], key=cfgs[row["trial"]]["train"]["run_name"], parent_key=f"tune/{best['search']}",
                         tags={"slam.step": "tune-trial", "slam.trial_status": row["status"]}, background=True) as run:
            run.log_params({"k": row["k"], "selection": row["selection"], "lr": row["lr"],
                            "layers": ",".join(map(str, row["layers"]))})
            run.log_metrics({m: row[m] for m in ("val_loss", "train_loss", *ACCURACY_METRICS, "val_accuracy_en")
                             if isinstance(row.get(m), (int, float))})
            run.set_tags({"slam.step": "tune-trial", "slam.trial_status": row["status"]})  # the run existed
    parent.log_params({"best_k": best["k"], "best_layers": ",".join(map(str, best["layers"])),
                       "best_lr": best["lr"], "best_selection": best["selection"],
                       "best_by": "tie (every trial scored the same)" if best.get("tied") else metric})
    # the run-wide names: best/val/loss, or best/val/acc in percent
    parent.log_metrics({"best/val/loss": best["value"]} if metric == "val_loss" else {"best/val/acc": 100 * best["value"]})
    with storage.local_copy(out_uri) as d:
        for f in ("best.json", "results.csv", "results.json", "tune.png"):
            parent.log_artifact(Path(d) / f, "tune")
    parent.set_tags({"slam.tune_out": out_uri})


def tune_search(cfg: SlamConfig, *, storage_root: str | None = None, ray_address: str | None = None,
                num_workers: int = 1, out_uri: str | None = None) -> TuneOutcome:
    """Run (or resume) the search; write best/results/plot to storage, then log them to MLflow."""
    from ray import tune

    from slam.tracking import get_tracker
    from slam.train.runs import check_inputs

    tc = cfg.tune
    _check(cfg)  # everything before starting Ray
    points = {p["trial"]: p for p in search_points(cfg, storage.read_json(cfg.train.probe))}
    check_inputs(cfg.replace(train={"layers": next(iter(points.values()))["layers"]}))
    root = storage.absolute(storage_root or cfg.storage.root)
    name = _search_name(cfg)
    out_uri = out_uri or storage.join(root, f"{name}-result")

    tracker = get_tracker(cfg.tracking)
    with tracker.run(name, key=f"tune/{name}", tags={"slam.step": "tune"}, background=True) as parent:
        parent.log_params({"k_grid": tc.k_grid, "lr_grid": tc.lr_grid or [cfg.train.lr], "selections": sorted({p["selection"] for p in points.values()}),
                           "search": tc.search, "metric": tc.metric, "max_steps": tc.max_steps, "asha": tc.asha,
                           "base_model": cfg.model.path, "probe": cfg.train.probe, "trials": len(points)})
        cfgs = {trial: _trial_cfg(cfg, p, name, f"tune/{name}") for trial, p in points.items()}
        _init_ray(ray_address)
        trials_root = storage.join(root, f"{name}-trials")
        run_dirs = {trial: storage.join(trials_root, c["train"]["run_name"]) for trial, c in cfgs.items()}
        trainable = tune.with_resources(
            tune.with_parameters(_trial, cfgs=cfgs, trials_root=trials_root, num_workers=num_workers), {"cpu": 0.01})
        results = _tuner(cfg, points, trainable, name, root, num_workers).fit()
        rows = _rows(results, points, tc.max_steps, run_dirs)
        best_row = pick_best(rows, tc.metric, tc.english_tolerance)
        best = {"k": best_row["k"], "layers": best_row["layers"], "lr": best_row["lr"],
                "selection": best_row["selection"], "metric": tc.metric, "value": best_row[tc.metric],
                "trial": best_row["trial"], "run_dir": best_row["run_dir"], "delta_uri": best_row["delta_uri"],
                "search": name, "tied": all_tied(rows, tc.metric)}
        if best["tied"]:
            log.warning("Tune: every trial scored %s = %s, so the search says nothing about k; kept the smallest "
                        "(k = %s). Trials need more steps (tune.max_steps) or questions to differ.",
                        tc.metric, best["value"], best["k"])
        write_outputs(rows, best, tc.metric, out_uri)  # storage first: an MLflow outage must not lose these
        _log_results(tracker, parent, rows, cfgs, best, tc.metric, out_uri)
    failed = [r["trial"] for r in rows if r["status"] == "error"]
    if failed:
        log.warning("trials that failed: %s (see %s)", ", ".join(failed), storage.join(root, name))
    return TuneOutcome(best=best, rows=rows, out_uri=out_uri, experiment_path=storage.join(root, name),
                       parent_run_id=parent.id)


def _trial_progress(total: int) -> Any:
    """A Tune callback: one progress line with ETA per finished trial (Tune's own tables need verbose)."""
    from ray.tune import Callback

    from slam.progress import progress

    class TrialProgress(Callback):
        def setup(self, **info: Any) -> None:
            self.bar = progress(total, "tune", "trial")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            m = trial.last_result or {}
            shown = {k: f"{m[k]:.3f}" for k in ("val_loss", "val_accuracy") if isinstance(m.get(k), (int, float))}
            self.bar.update(1, **{"last": trial.config["point"]["trial"], **shown})

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.bar.update(1, last=f"{trial.config['point']['trial']} FAILED")

    return TrialProgress()
