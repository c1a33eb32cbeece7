"""The study's numbers and pictures: per-language accuracy with paired bootstrap CIs, table.md, study.png.

    summary = summarize(cfg, probe_report, unit_results)
    write_report(summary, "runs/study")          # summary.json, table.md, study.png
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from slam import storage
from slam.study.plan import ARMS, StudyConfig, pipeline_layers
from slam.study.stats import boot_means, bootstrap_indices, ci_half_width, seed_draws

# Which layers: the probe's choice and the paper's bottom-k, each against the controls. SLAM or full-parameter
# training: against full and two-stage at equal steps (bottom-k) and at about equal time (bottom-k-long). Is it
# the languages: slam-en-only against the arm that trains its layers on every language (see _same_layers).
COMPARISONS = [("probe", "random-k"), ("probe", "top-layers"), ("probe", "bottom-k"), ("bottom-k", "random-k"),
               ("bottom-k", "top-layers"), ("probe", "two-stage"), ("probe", "full"), ("bottom-k", "two-stage"),
               ("bottom-k", "full"), ("bottom-k-long", "bottom-k"), ("bottom-k-long", "full"),
               ("bottom-k-long", "two-stage")]


def _same_layers(results: list[dict]) -> str | None:
    """The arm that trains slam-en-only's layers on all languages: bottom-k (the pipeline's default), or probe
    in a study whose slam-en-only trained the probe's choice (an older slam, which trained a stable probe's)."""
    layers = next((r["layers"] for r in results if r["arm"] == "slam-en-only"), None)
    return next((a for a in ("probe", "bottom-k") if any(r["arm"] == a and r["layers"] == layers for r in results)),
                None)


def _ci(boots: np.ndarray) -> list[float]:
    return [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]


def summarize(cfg: StudyConfig, report: dict, results: list[dict]) -> dict[str, Any]:
    """Per task, arm and language: accuracy (mean over reps) with 95% CI, paired Δ vs base, format share."""
    arms = [a for a in ARMS if any(r["arm"] == a for r in results)]
    out: dict[str, Any] = {"arms": {}, "tasks": {}, "comparisons": {}, "n_boot": cfg.n_boot,
                           "probe": {"layers": report["probe_selected_layers"], "stable": report["stable"],
                                     "trained_by_pipeline": pipeline_layers(report, cfg.k),
                                     "warnings": report.get("warnings", [])}}
    for arm in arms:
        rs = [r for r in results if r["arm"] == arm]
        out["arms"][arm] = {"reps": len(rs), "layers": [r["layers"] for r in rs],
                            "trainable": rs[0]["trainable"], "trainable_fraction": rs[0]["trainable_fraction"],
                            "lr": rs[0].get("lr"),  # None: a unit from a slam that did not record it
                            "train_seconds": float(np.mean([r["train_seconds"] for r in rs]))}
    headline: dict[str, float] = {}
    for task in cfg.tasks:
        base = next(r for r in results if r["arm"] == "base")["tasks"][task]["per_lang"]
        langs = list(base)
        idx = {lg: bootstrap_indices(len(base[lg]["correct"]), cfg.n_boot, seed=i) for i, lg in enumerate(langs)}
        boots: dict[str, dict[str, np.ndarray]] = {}
        t: dict[str, Any] = {"langs": langs, "n": {lg: len(base[lg]["correct"]) for lg in langs}, "arms": {}}
        for arm in arms:
            rs = [r["tasks"][task]["per_lang"] for r in results if r["arm"] == arm]
            for lg in langs:
                if any(x[lg]["ids"] != base[lg]["ids"] for x in rs):
                    raise ValueError(f"{arm} was evaluated on other {lg} questions than base: not paired")
            cor = {lg: np.array([x[lg]["correct"] for x in rs], dtype=float) for lg in langs}
            fmt = np.mean([np.mean(x[lg]["format"]) for x in rs for lg in langs])
            # one draw for all languages of the arm; seeded by its name, so adding arms leaves it unchanged
            seeds = seed_draws(len(rs), cfg.n_boot, seed=zlib.crc32(arm.encode()))
            boots[arm] = {lg: boot_means(cor[lg], idx[lg], seeds) for lg in langs}
            non_en = [lg for lg in langs if lg != "en"]
            boots[arm]["non-en"] = np.mean([boots[arm][lg] for lg in non_en], axis=0)
            acc = {lg: float(cor[lg].mean()) for lg in langs}
            acc["non-en"] = float(np.mean([acc[lg] for lg in non_en]))
            t["arms"][arm] = {"acc": acc, "ci": {k: _ci(v) for k, v in boots[arm].items()}, "format_share": float(fmt),
                              "per_rep_non_en": [float(np.mean([np.mean(x[lg]["correct"]) for lg in non_en])) for x in rs]}
        for arm in arms:
            for key in ("non-en", "en"):
                d = boots[arm][key] - boots["base"][key]
                t["arms"][arm][f"delta_{key}"] = {"value": t["arms"][arm]["acc"][key] - t["arms"]["base"]["acc"][key],
                                                  "ci": _ci(d)}
        ref = _same_layers(results)
        for a, b in [*COMPARISONS, *([("slam-en-only", ref)] if ref else [])]:
            if a in boots and b in boots:
                d = boots[a]["non-en"] - boots[b]["non-en"]
                out["comparisons"][f"{task}: {a} - {b} (non-en)"] = {
                    "value": t["arms"][a]["acc"]["non-en"] - t["arms"][b]["acc"]["non-en"], "ci": _ci(d)}
        p = max(0.05, min(0.95, t["arms"]["base"]["acc"]["non-en"]))
        t["ci_half_width_points"] = {lg: round(100 * ci_half_width(0.5, n), 1) for lg, n in t["n"].items()}
        t["ci_note"] = (f"n = {min(t['n'].values())} questions per language: a single accuracy near 50% has a 95% "
                        f"interval of about +-{100 * ci_half_width(0.5, min(t['n'].values())):.1f} points "
                        f"(+-{100 * ci_half_width(p, min(t['n'].values())):.1f} at the base model's "
                        f"{100 * p:.0f}%). Intervals resample the questions (paired across arms) and each arm's seeds.")
        out["tasks"][task] = t
        for arm in arms:
            headline[f"{task}_{arm}_non_en"] = t["arms"][arm]["acc"]["non-en"]
    out["headline"] = headline
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(summary: dict) -> str:
    lines = []
    for task, t in summary["tasks"].items():
        langs = t["langs"]
        lines += [f"### {task}: accuracy % [95% bootstrap CI] (n per language: "
                  + ", ".join(f"{lg} {n}" for lg, n in t["n"].items()) + ")", "",
                  "| arm | reps | trainable | lr | train s | " + " | ".join(langs) + " | non-en | Δ non-en vs base | "
                  "Δ en vs base | answer format |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(langs) + "---:|---:|---:|---:|"]
        for arm, a in t["arms"].items():
            meta = summary["arms"][arm]
            cells = [f"{_pct(a['acc'][lg])} [{_pct(a['ci'][lg][0])}, {_pct(a['ci'][lg][1])}]" for lg in langs]
            dn, de = a["delta_non-en"], a["delta_en"]
            lr = f"{meta['lr']:g}" if meta.get("lr") else "-"
            lines.append(f"| {arm} | {meta['reps']} | {100 * meta['trainable_fraction']:.1f}% | {lr} | "
                         f"{meta['train_seconds']:.0f} | " + " | ".join(cells)
                         + f" | {_pct(a['acc']['non-en'])} | {100 * dn['value']:+.1f} [{100 * dn['ci'][0]:+.1f}, "
                         f"{100 * dn['ci'][1]:+.1f}] | {100 * de['value']:+.1f} [{100 * de['ci'][0]:+.1f}, "
                         f"{100 * de['ci'][1]:+.1f}] | {_pct(a['format_share'])}% |")
        lines += ["", t["ci_note"], ""]
        seeds = [f"{arm} " + " / ".join(_pct(x) for x in a["per_rep_non_en"])
                 for arm, a in t["arms"].items() if len(a["per_rep_non_en"]) > 1]
        if seeds:
            lines += ["Non-English accuracy per seed: " + "; ".join(seeds) + ".", ""]
    if summary["comparisons"]:
        lines += ["Paired differences in non-English accuracy (points, 95% CI):", ""]
        for name, c in summary["comparisons"].items():
            lines.append(f"- {name}: {100 * c['value']:+.1f} [{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}]")
        lines.append("")
    p = summary["probe"]
    draws = summary["arms"].get("random-k", {}).get("layers")
    lines.append(f"Probe selection: {p['layers']} (stable: {p['stable']}; the pipeline trains "
                 f"{p['trained_by_pipeline']})." + (f" random-k layers per rep: {draws}" if draws else ""))
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task, t = next(iter(summary["tasks"].items()))
    cols = [*t["langs"], "non-en"]
    arms = list(t["arms"])
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(cols) * len(arms) / 4), 4.2))
    w = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        a = t["arms"][arm]
        ys = [100 * a["acc"][c] for c in cols]
        err = [[y - 100 * a["ci"][c][0] for y, c in zip(ys, cols, strict=True)],
               [100 * a["ci"][c][1] - y for y, c in zip(ys, cols, strict=True)]]
        ax.bar(np.arange(len(cols)) + (i - (len(arms) - 1) / 2) * w, ys, w, yerr=err, capsize=2, label=arm)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{task}: arms x languages (95% bootstrap CI, n={min(t['n'].values())}/language)", fontsize=10)
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(summary: dict, root: Path) -> None:
    storage.write_text(str(root / "summary.json"), json.dumps(summary, indent=1) + "\n")
    storage.write_text(str(root / "table.md"), markdown(summary))
    plot(summary, root / "study.png")
