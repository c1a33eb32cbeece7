"""Human-readable probe outputs: heatmap.png (layers x languages), scores.png, summary.md.

    from slam.probe.report import write_outputs
    write_outputs(report, "s3://bucket/run/probe")   # probe.json + plots + summary.md, published at once

summary.md is what KFP's Markdown visualization and MLflow show; probe.json is what machines read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from slam import storage

MATRIX_TITLES = {
    "active": "activated neurons (share of width)",
    "overlap_en": "overlap with English (Jaccard)",
    "fire_rate": "mean activation probability",
    "specific": "language-specific neurons (share of width)",
    "similarity_en": "cosine similarity with English",
}
SCORE_NAMES = {
    "msd": "MSD of activated-neuron share + overlap with English",
    "lape": "mean language specificity (log L - entropy) of strongly active neurons",
    "cosine": "1 - cosine similarity with English",
}


def plot_heatmap(report: dict, path: str | Path) -> None:
    """One panel per layer x language matrix in the report, selected layers marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mats = report["stats"]["matrices"]
    names = [n for n in MATRIX_TITLES if n in mats and n != "fire_rate"] or list(mats)
    langs, n_layers = report["langs"], report["num_layers"]
    fig, axes = plt.subplots(1, len(names), figsize=(1.0 + 0.5 * len(langs) * len(names) + 1.2 * len(names),
                                                     1.5 + 0.28 * n_layers), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        m = np.array(mats[name], dtype=float)  # (layers, langs)
        im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(n_layers), [f"{i}{' *' if i in report['selected_layers'] else ''}"
                                        for i in range(n_layers)], fontsize=7)
        ax.set_xlabel("language")
        ax.set_ylabel("layer (* = selected)")
        ax.set_title(MATRIX_TITLES.get(name, name), fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"probe ({report['method']}), {report['model_type']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scores(report: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, sel = report["scores"], set(report["selected_layers"])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.25 * len(scores)), 3.2))
    ax.bar(range(len(scores)), scores, color=["tab:red" if i in sel else "tab:gray" for i in range(len(scores))])
    ax.set_xlabel("layer (red = selected)")
    ax.set_ylabel("language-specificity score")
    ax.set_title(f"{report['method']}: {SCORE_NAMES.get(report['method'], '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(report: dict) -> str:
    scores, rank = report["scores"], report["ranking"]
    position = {layer: r + 1 for r, layer in enumerate(rank)}
    stats = report["stats"]
    raw = report.get("raw_scores") or scores
    null = report.get("null") or {}
    params = report.get("params", {})
    lines = [
        f"# Layer probe: {report['method']} ({report['model_type']}, {report['num_layers']} layers)",
        "",
        f"**Layers to train** ({report['selection']}, k={report['top_k']}): "
        f"`{','.join(map(str, report['selected_layers']))}`"
        + (f" — the probe is **not stable**, so this is the paper's bottom-k fallback; the probe's own choice "
           f"was `{','.join(map(str, report.get('probe_selected_layers', [])))}`" if report.get("fallback") else "")
        + (f" — not the probe's choice: its own top-k is `{','.join(map(str, report.get('probe_selected_layers', [])))}`"
           f" ({'stable' if report.get('stable') else 'not stable'}; `probe.selection=top-k` trains it)"
           if report["selection"] not in ("top-k", "contiguous") else ""),
        "",
        f"Ranking (most language-specific first, by {params.get('rank_by', 'raw')}): `{', '.join(map(str, rank))}`",
        "",
    ]
    stab = report.get("stability")
    if stab:
        tau, ovl = stab["split_half_tau"], stab["split_half_overlap"]
        lolo = stab.get("leave_one_language_out", {})
        lines += [
            f"**Stability** ({'stable' if report.get('stable') else 'NOT stable'}): split-half Kendall tau "
            + (f"{tau['mean']:.2f} (min {tau['min']:.2f}) over {stab['split_halves']} random halves of "
               f"{stab['blocks']} blocks; selection overlap {ovl['mean']:.1f}/{stab['k']} "
               f"(top-k {stab['split_half_topk_overlap']['mean']:.1f}/{stab['k']})" if tau["mean"] is not None
               else "not measurable")
            + ("; leave-one-language-out keeps " + ", ".join(f"{lg} {v['overlap']}/{stab['k']}" for lg, v in lolo.items())
               if lolo else "")
            + f"; layers above the language-shuffled null (p <= {stab['alpha']}): "
            + (", ".join(map(str, stab["significant_layers"])) or "none") + ".",
            "",
        ]
        lines += [f"> warning: {w}" for w in report.get("warnings", [])] + ([""] if report.get("warnings") else [])
    lines += [
        f"Score: {SCORE_NAMES.get(report['method'], report['method'])}. Languages: {', '.join(report['langs'])}; "
        f"{stats['questions']} parallel questions each; tokens counted "
        + ", ".join(f"{k} {v}" for k, v in stats["tokens"].items())
        + (" (balanced)" if params.get("balance_tokens") else "") + ".",
        "",
        "| layer | score | raw | null mean | p | rank | trained |",
        "|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    pv, nm = null.get("p_values") or [None] * len(scores), null.get("mean") or [None] * len(scores)
    for i, s in enumerate(scores):
        cells = [f"{x:.4g}" if isinstance(x, (int, float)) else "-" for x in (s, raw[i], nm[i], pv[i])]
        lines.append(f"| {i} | {' | '.join(cells)} | {position[i]} | {'✔' if i in report['selected_layers'] else ''} |")
    lines += ["", f"Model fingerprint `{report['model_fingerprint']}`, data fingerprint "
                  f"`{report['data_fingerprint']}`.", ""]
    return "\n".join(lines)


def write_outputs(report: dict, out_uri: str) -> str:
    """probe.json, heatmap.png, scores.png, summary.md under `out_uri` (local dir or s3://), atomically."""
    with tempfile.TemporaryDirectory(prefix="slam-probe-") as tmp:
        d = Path(tmp)
        storage.write_json(d / "probe.json", report)
        plot_heatmap(report, d / "heatmap.png")
        plot_scores(report, d / "scores.png")
        (d / "summary.md").write_text(render_markdown(report), encoding="utf-8")
        storage.publish_dir(d, out_uri)
    return out_uri
