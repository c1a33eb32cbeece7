"""Per-language accuracy of a causal LM on multilingual math word problems (MGSM, MSVAMP, synthetic).

    from slam import evaluate, tasks
    records = tasks.get("mgsm").load("s3://bucket/bench/mgsm", langs=["en", "de"], limit=50)   # or hf:juletxara/mgsm
    report = evaluate.evaluate_model(model, tok, records, max_new_tokens=600)
    evaluate.write_report(report, "runs/eval-base")          # eval.json, eval.png, eval.md (or s3://...)
    print(evaluate.compare_table(base_report, tuned_report))

Protocol (MathOctopus/QAlign, which SLAM reports with): Alpaca prompt without a CoT trigger, greedy
decoding, answer = last number of the completion (slam.tasks.extract_number), accuracy per language,
average = plain mean over languages. English is reported on its own as the forgetting guard.

Generation (batched, greedy, stop strings) is slam.generation's, the same the served model uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from slam.errors import SlamError

log = logging.getLogger(__name__)

def evaluate_model(model: Any, tokenizer: Any, records: Sequence[Any], *, batch_size: int | None = None,
                   max_new_tokens: int = 160, template: str = "alpaca", progress: bool = True,
                   extract: Callable[[str], float | None] | None = None, stop_pattern: str | None = None) -> dict:
    """Generate an answer for every record and score it against `record.gold`, per language.

    `records` are slam.data.records.Record (anything with id, lang, question, gold works). `extract`
    turns a completion into a number (default: slam.tasks.extract_number, the shared protocol).
    `batch_size` None = slam.generation's default for the model's device.
    """
    from slam.generation import default_batch_size, generate
    from slam.tasks import extract_number, is_correct

    extract = extract or extract_number
    batch_size = default_batch_size(model) if batch_size is None else batch_size
    _validate(records, batch_size, max_new_tokens, template)
    t0 = time.perf_counter()
    completions, new_tokens = generate(model, tokenizer, [r.question for r in records], batch_size=batch_size,
                                       max_new_tokens=max_new_tokens, template=template, progress=progress,
                                       stop_pattern=stop_pattern)
    seconds = time.perf_counter() - t0

    samples = []
    for r, text in zip(records, completions, strict=True):
        pred = extract(text)
        samples.append({"id": r.id, "lang": r.lang, "question": r.question, "completion": text,
                        "pred": pred, "gold": r.gold, "correct": is_correct(pred, r.gold)})
    report = summarize(samples)
    report["meta"] = {"template": template, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
                      "questions": len(records), "new_tokens": new_tokens, "seconds": round(seconds, 3),
                      "questions_per_s": round(len(records) / seconds, 3) if seconds > 0 else None}
    return report


def evaluate_task(model: Any, tokenizer: Any, task: str, source: str, *, langs: list[str] | None = None,
                  limit: int | None = None, exclude: Sequence[str] = (), batch_size: int | None = None,
                  max_new_tokens: int = 0, template: str = "alpaca", progress: bool = True) -> dict:
    """Load a benchmark from `source` (slam.tasks.sources) and evaluate on it; max_new_tokens 0 = the
    task's protocol value. `exclude`: problem_ids held out for probing, never evaluated on."""
    from slam import tasks

    mod = tasks.get(task)
    records = mod.load(source, langs=langs or None, limit=limit, exclude=exclude)
    report = evaluate_model(model, tokenizer, records, batch_size=batch_size,
                            max_new_tokens=max_new_tokens or mod.MAX_NEW_TOKENS, template=template,
                            progress=progress, extract=mod.extract_answer)
    report["meta"].update({"task": task, "data": source, "limit": limit, "excluded_for_probe": len(set(exclude))})
    return report


def mark_zero_shot(report: dict, trained_langs: Sequence[str] | None) -> dict:
    """Record which evaluated languages the model was not trained on (`report["zero_shot"]`); None =
    unknown training languages, nothing is marked."""
    if trained_langs is not None:
        report["zero_shot"] = [lang for lang in report["per_lang"] if lang not in set(trained_langs)]
    return report


def _validate(records: Sequence[Any], batch_size: int, max_new_tokens: int, template: str) -> None:
    problems = []
    if not records:
        problems.append("no questions to evaluate (empty task, or --langs/--limit selected nothing)")
    no_gold = [r.id for r in records if getattr(r, "gold", None) is None]
    if no_gold:
        problems.append(f"{len(no_gold)} question(s) have no gold answer (first: {no_gold[0]})")
    if batch_size < 1:
        problems.append(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        problems.append(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if template not in ("alpaca", "chat"):
        problems.append(f"unknown prompt template {template!r} (alpaca or chat)")
    if problems:
        raise SlamError("; ".join(problems))


def summarize(samples: list[dict]) -> dict:
    """Per-language accuracy, the plain mean over languages, the mean without English, and English."""
    per_lang: dict[str, dict] = {}
    for s in samples:
        d = per_lang.setdefault(s["lang"], {"accuracy": 0.0, "correct": 0, "total": 0})
        d["total"] += 1
        d["correct"] += int(s["correct"])
    for d in per_lang.values():
        d["accuracy"] = d["correct"] / d["total"]
    per_lang = dict(sorted(per_lang.items(), key=lambda kv: (kv[0] != "en", kv[0])))
    accs = [d["accuracy"] for d in per_lang.values()]
    non_en = [d["accuracy"] for lang, d in per_lang.items() if lang != "en"]
    return {
        "per_lang": per_lang,
        "average": sum(accs) / len(accs) if accs else None,
        "average_non_en": sum(non_en) / len(non_en) if non_en else None,
        "english": per_lang["en"]["accuracy"] if "en" in per_lang else None,
        "samples": samples,
    }


# --------------------------------------------------------------------------------------------------
# Reports


def check_report(report: Any, where: str = "eval report") -> dict:
    """An eval.json as `summarize` writes it: per-language accuracies that are numbers in [0, 1]. Anything
    that reads scores from a file (the registry's gate, the model card) checks it here first."""
    import math

    def acc(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1

    per = report.get("per_lang") if isinstance(report, dict) else None
    if not isinstance(per, dict) or not per:
        raise SlamError(f"{where} has no per_lang accuracies (expected slam eval's eval.json)")
    bad = [lang for lang, v in per.items() if not isinstance(v, dict) or not acc(v.get("accuracy"))]
    bad += [k for k in ("average", "average_non_en", "english") if report.get(k) is not None and not acc(report[k])]
    if bad:
        raise SlamError(f"{where}: malformed accuracy for {', '.join(map(str, bad[:5]))} (numbers in [0, 1] "
                        "expected, as `slam evaluate` writes them)")
    return report


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _label(lang: str, *reports: dict) -> str:
    """`th (zero-shot)` for a language evaluated but not trained on."""
    return f"{lang} (zero-shot)" if any(lang in r.get("zero_shot", ()) for r in reports) else lang


def markdown_table(report: dict) -> str:
    """| lang | accuracy | correct | total | rows, then the averages (accuracy in percent)."""
    lines = ["| lang | accuracy (%) | correct | total |", "|---|---:|---:|---:|"]
    for lang, d in report["per_lang"].items():
        lines.append(f"| {_label(lang, report)} | {_pct(d['accuracy'])} | {d['correct']} | {d['total']} |")
    lines.append(f"| **average** | {_pct(report['average'])} | | |")
    lines.append(f"| average non-en | {_pct(report['average_non_en'])} | | |")
    return "\n".join(lines)


def compare_table(base_report: dict, tuned_report: dict, names: tuple[str, str] = ("base", "tuned")) -> str:
    """Markdown table of base vs tuned accuracy per language (percent) with the difference in points."""
    langs = list(dict.fromkeys([*base_report["per_lang"], *tuned_report["per_lang"]]))

    def acc(rep: dict, lang: str) -> float | None:
        d = rep["per_lang"].get(lang)
        return None if d is None else d["accuracy"]

    def row(label: str, a: float | None, b: float | None) -> str:
        delta = "—" if a is None or b is None else f"{100 * (b - a):+.1f}"
        return f"| {label} | {_pct(a)} | {_pct(b)} | {delta} |"

    lines = [f"| lang | {names[0]} (%) | {names[1]} (%) | Δ (points) |", "|---|---:|---:|---:|"]
    lines += [row(_label(lang, base_report, tuned_report), acc(base_report, lang), acc(tuned_report, lang))
              for lang in langs]
    lines.append(row("**average**", base_report["average"], tuned_report["average"]))
    lines.append(row("average non-en", base_report["average_non_en"], tuned_report["average_non_en"]))
    return "\n".join(lines)


def _bar_chart_png(report: dict, title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(report["per_lang"])
    accs = [100 * report["per_lang"][lang]["accuracy"] for lang in langs]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(langs) + 2), 3.5))
    zero = set(report.get("zero_shot", ()))
    ticks = [f"{lang}\n(0-shot)" if lang in zero else lang for lang in langs]
    bars = ax.bar(ticks, accs, color=["#d62728" if lang == "en" else "#1f77b4" for lang in langs],
                  hatch=["//" if lang in zero else "" for lang in langs])
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    if report["average"] is not None:
        ax.axhline(100 * report["average"], color="gray", linestyle="--", linewidth=1,
                   label=f"average {100 * report['average']:.1f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_report(report: dict, out_uri: str, title: str = "") -> dict[str, str]:
    """Write eval.md, eval.png and (last, so its presence means the set is complete) eval.json under
    `out_uri` (a local dir or s3:// prefix). Each file is written atomically. Returns name -> URI."""
    from slam import storage

    meta = report.get("meta", {})
    title = title or f"{meta.get('task', 'eval')} — per-language accuracy (%)"
    md = (f"# {title}\n\n{markdown_table(report)}\n\n"
          f"{len(report['samples'])} questions, template `{meta.get('template', '?')}`, "
          f"max_new_tokens {meta.get('max_new_tokens', '?')}, greedy.\n")
    if report.get("zero_shot"):
        md += (f"\nZero-shot (evaluated, not in the training data): {', '.join(report['zero_shot'])}.\n")
    wrong = [s for s in report["samples"] if not s["correct"]][:3]
    if wrong:
        md += "\n## Sample mistakes\n"
        for s in wrong:
            md += f"\n- `{s['id']}` ({s['lang']}): gold {s['gold']}, predicted {s['pred']}\n"
    uris = {"md": storage.join(out_uri, "eval.md"), "png": storage.join(out_uri, "eval.png"),
            "json": storage.join(out_uri, "eval.json")}
    storage.write_text(uris["md"], md)
    storage.write_bytes(uris["png"], _bar_chart_png(report, title))
    storage.write_json(uris["json"], report)
    return uris
