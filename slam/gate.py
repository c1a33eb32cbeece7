"""The champion gate, per language: may a new model version replace the champion?

    cand = Evidence.from_reports(slam_eval, base_eval, trained=["de", "fr", "sw"])
    decision = decide(cand, champion_evidence, margin=1.0)      # pure: no MLflow here
    decision.promote, decision.reason, decision.markdown()

The challenger and the champion are compared on the union of the languages they were evaluated on:
- a language both were evaluated on may not drop more than `margin` accuracy points;
- a language only the challenger was evaluated on (a new language) must beat the base model there;
- a language only the champion was evaluated on blocks promotion (the challenger's score is unknown);
- and the challenger must bring something: a new language, or a higher average over the shared
  non-English languages. A tie changes nothing.
The first version of a model has no champion to beat and is promoted. Accuracies are fractions (0..1);
the table and reasons speak in percent and points. Each version records its evidence as tags
(`slam.acc.<lang>`, `slam.base_acc.<lang>`, `slam.trained_languages`), read back by `from_tags`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACC_TAG, BASE_ACC_TAG = "slam.acc.", "slam.base_acc."
TRAINED_TAG, EVALUATED_TAG, GATE_TAG = "slam.trained_languages", "slam.eval_languages", "slam.gate"


@dataclass(frozen=True)
class Evidence:
    """What one model version was measured on: accuracy per language, the base's on the same questions."""

    accuracy: dict[str, float]
    base: dict[str, float] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)

    @classmethod
    def from_reports(cls, report: dict, base_report: dict | None = None, trained: list[str] | None = None) -> Evidence:
        from slam.errors import SlamError

        per = report.get("per_lang")
        if not isinstance(per, dict) or not per:
            raise SlamError("eval report has no per_lang accuracies (expected slam evaluate's eval.json)")
        try:
            acc = {lang: float(v["accuracy"]) for lang, v in per.items()}
            base = {lang: float(v["accuracy"]) for lang, v in ((base_report or {}).get("per_lang") or {}).items()}
        except (TypeError, KeyError, ValueError):
            raise SlamError("eval report: every per_lang entry needs a numeric accuracy") from None
        return cls(acc, base, sorted(trained or []))

    def tags(self) -> dict[str, str]:
        tags = {f"{ACC_TAG}{k}": f"{v:.6f}" for k, v in self.accuracy.items()}
        tags.update({f"{BASE_ACC_TAG}{k}": f"{v:.6f}" for k, v in self.base.items()})
        tags[EVALUATED_TAG] = ",".join(sorted(self.accuracy))
        if self.trained:
            tags[TRAINED_TAG] = ",".join(self.trained)
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Evidence | None:
        """A version's evidence from its tags (None when it has none: not registered by slam)."""
        acc = {k[len(ACC_TAG):]: float(v) for k, v in tags.items() if k.startswith(ACC_TAG)}
        if not acc:  # versions registered before the per-language gate: acc_<lang> tags
            acc = {k[4:]: float(v) for k, v in tags.items() if k.startswith("acc_")}
        if not acc:
            return None
        base = {k[len(BASE_ACC_TAG):]: float(v) for k, v in tags.items() if k.startswith(BASE_ACC_TAG)}
        trained = [x for x in tags.get(TRAINED_TAG, "").split(",") if x]
        return cls(acc, base, trained)


@dataclass(frozen=True)
class LangRow:
    lang: str
    candidate: float | None
    champion: float | None
    base: float | None
    verdict: str
    ok: bool


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    rows: list[LangRow]

    def markdown(self) -> str:
        """| lang | base | champion | this version | Δ vs champion | verdict | (percent, points)."""
        lines = ["| lang | base (%) | champion (%) | this version (%) | Δ vs champion | gate |",
                 "|---|---:|---:|---:|---:|:--|"]
        for r in self.rows:
            delta = "" if r.candidate is None or r.champion is None else f"{100 * (r.candidate - r.champion):+.1f}"
            lines.append(f"| {r.lang} | {_pct(r.base)} | {_pct(r.champion)} | {_pct(r.candidate)} | {delta} | "
                         f"{'✓' if r.ok else '✗'} {r.verdict} |")
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        """`slam.gate` (the decision, set last: it marks the version as decided) and one tag per language."""
        tags = {f"{GATE_TAG}.{r.lang}": f"{'ok' if r.ok else 'blocks'}: {r.verdict}" for r in self.rows}
        tags[GATE_TAG] = f"{'champion' if self.promote else 'challenger'}: {self.reason}"
        return tags


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def decide(candidate: Evidence, champion: Evidence | None, margin: float = 1.0) -> Decision:
    """(promote?, why, the per-language table). `margin` in accuracy points (1.0 = one percentage point)."""
    langs = sorted(set(candidate.accuracy) | set(champion.accuracy if champion else {}), key=lambda x: (x != "en", x))
    rows: list[LangRow] = []
    for lang in langs:
        cand = candidate.accuracy.get(lang)
        champ = champion.accuracy.get(lang) if champion else None
        base = candidate.base.get(lang, champion.base.get(lang) if champion else None)
        if champion is None:
            verdict = "first version" if base is None else f"{100 * (cand - base):+.1f} vs base"
            rows.append(LangRow(lang, cand, None, base, verdict, True))
        elif cand is None:
            rows.append(LangRow(lang, None, champ, base, "not evaluated (the champion was)", False))
        elif champ is None:
            if base is None:
                rows.append(LangRow(lang, cand, None, None, "new language, no base accuracy to beat", False))
            else:
                beats = cand > base
                rows.append(LangRow(lang, cand, None, base, f"new language, {100 * (cand - base):+.1f} vs base", beats))
        else:
            drop = 100 * (champ - cand)
            ok = drop <= margin + 1e-9
            verdict = (f"{-drop:+.1f} points" if ok else f"drops {drop:.1f} points, more than the {margin:g}-point margin")
            rows.append(LangRow(lang, cand, champ, base, verdict, ok))
    if champion is None:
        return Decision(True, "no champion yet", rows)
    blocked = [r for r in rows if not r.ok]
    if blocked:
        why = "; ".join(f"{r.lang}: {r.verdict}" for r in blocked)
        return Decision(False, f"blocked by {why}", rows)
    new = [r.lang for r in rows if r.champion is None]
    shared = [r for r in rows if r.champion is not None and r.lang != "en"] or [r for r in rows if r.champion is not None]
    cand_mean = _mean([r.candidate for r in shared if r.candidate is not None])
    champ_mean = _mean([r.champion for r in shared if r.champion is not None])
    if new:
        return Decision(True, f"adds {', '.join(new)} (beats the base there) and no language drops more than "
                              f"{margin:g} points", rows)
    if cand_mean is not None and champ_mean is not None and cand_mean > champ_mean:
        return Decision(True, f"average non-English accuracy {100 * cand_mean:.1f} beats the champion's "
                              f"{100 * champ_mean:.1f}", rows)
    shown = "—" if cand_mean is None else f"{100 * cand_mean:.1f}"
    return Decision(False, f"average non-English accuracy {shown} does not beat the champion's "
                           f"{_pct(champ_mean)} and no new language", rows)
