"""The pictures users compare runs with (PNG bytes, for KFP visualizations and MLflow artifacts).

    png = compare_bars_png(base_report, slam_report)        # base vs SLAM per language, delta on top
    png = loss_curve_png(history, val)                      # train loss per step, val loss/accuracy points

The probe's layer x language heatmap is slam.probe.report's; one evaluation's bars are slam.evaluate's.
"""

from __future__ import annotations

import io
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def compare_bars_png(base: dict, tuned: dict, names: tuple[str, str] = ("base", "SLAM"), title: str = "") -> bytes:
    """Grouped bars per language (accuracy %), the difference in points above each pair, averages last."""
    plt = _plt()
    langs = list(dict.fromkeys([*base["per_lang"], *tuned["per_lang"]]))

    def acc(rep: dict, lang: str) -> float:
        d = rep["per_lang"].get(lang)
        return float("nan") if d is None else 100 * d["accuracy"]

    labels = [*langs, "avg non-en"]
    a = [acc(base, x) for x in langs] + [100 * (base.get("average_non_en") or 0.0)]
    b = [acc(tuned, x) for x in langs] + [100 * (tuned.get("average_non_en") or 0.0)]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(labels) + 2.5), 3.8))
    xs = list(range(len(labels)))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], a, w, label=names[0], color="#9e9e9e")
    bars = ax.bar([x + w / 2 for x in xs], b, w, label=names[1], color="#1f77b4")
    for va, vb, bar in zip(a, b, bars, strict=True):
        if va == va and vb == vb:  # not NaN
            d = vb - va
            ax.annotate(f"{d:+.1f}", (bar.get_x() + bar.get_width() / 2, max(va, vb)), xytext=(0, 3),
                        textcoords="offset points", ha="center", fontsize=8,
                        color="#2ca02c" if d > 0 else "#d62728" if d < 0 else "#555555")
    ax.set_xticks(xs, labels)
    ax.set_ylim(0, max(10.0, *(v for v in a + b if v == v)) * 1.2)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or f"{names[0]} vs {names[1]} per language (Δ in points)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def loss_curve_png(history: list[dict], val: list[dict], title: str = "training") -> bytes:
    """Train loss per step; validation loss (and accuracy %, right axis) where they were measured."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["train_loss"] for h in history], label="train loss", color="#1f77b4", linewidth=1.2)
    vl = [(v["step"], v["val_loss"]) for v in val if v.get("val_loss") is not None]
    if vl:
        ax.plot(*zip(*vl, strict=True), "o-", label="val loss", color="#ff7f0e", markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    va = [(v["step"], 100 * v["val_accuracy"]) for v in val if v.get("val_accuracy") is not None]
    if va:
        ax2 = ax.twinx()
        ax2.plot(*zip(*va, strict=True), "s--", label="val accuracy (%)", color="#2ca02c", markersize=4)
        ax2.set_ylabel("val accuracy (%)")
        ax2.legend(fontsize=8, loc="center right")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=10)
    return _png(fig)
