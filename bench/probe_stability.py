"""Probe stability on a real model: split-half Kendall tau, top-k overlap, leave-one-language-out, per method
and setting; prints one table (the numbers the README quotes).

    .venv/bin/python bench/probe_stability.py                                   # SmolLM2 + synthetic world, k=6
    .venv/bin/python bench/probe_stability.py --model tiny --questions 16        # seconds, a smoke check
    .venv/bin/python bench/probe_stability.py --settings before,after --methods msd --out stab.json

Settings: `before` = the uncalibrated probe as it was (fixed bar p >= 0.01, no token balance, ranked by
the raw statistic); `after` = the defaults of slam.config.ProbeConfig (calibrated); the others change one
thing from `after` (`z`: ranked by z-score; `layer`: msd's layer-quantile bar; `raw`: calibrated counts,
ranked by the raw statistic; `unbalanced`: no token balance). One counting pass per token-balance
setting serves every method and setting (slam.probe.collect + slam.probe.calibrate, as run_probes does).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace

SETTINGS = {
    "before": {"activation": "fixed", "fire_fraction": 0.01, "balance_tokens": False, "rank_by": "raw"},
    "after": {},
    "z": {"rank_by": "z"},
    "layer": {"activation": "layer"},
    "raw": {"rank_by": "raw"},
    "unbalanced": {"balance_tokens": False},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pypi:smollm2", help="model URI, or 'tiny'")
    ap.add_argument("--data", default="", help="probe.jsonl or a synth dir (default: a fresh synthetic world)")
    ap.add_argument("--langs", default="en,de,fr,zh,th,sw")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--methods", default="msd,lape,cosine")
    ap.add_argument("--settings", default="before,after,z,layer,raw,unbalanced")
    ap.add_argument("--selection", default="top-k")
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    from slam.commands.probe import load_probe_records
    from slam.config import ProbeConfig
    from slam.probe.calibrate import calibrate
    from slam.probe.collect import collect, parallel_questions

    langs = a.langs.split(",")
    if not a.data:
        from slam.data.synth import synth

        a.data = tempfile.mkdtemp(prefix="slam-stab-")
        synth(a.data, langs=langs, n_train=10, n_val=0, n_test=0, n_probe=a.questions, seed=0)
    records = load_probe_records(a.data, langs)
    if a.model == "tiny":
        from slam.testing import tiny_model, tiny_tokenizer

        tok = tiny_tokenizer([r.question for r in records], vocab_size=600)
        model = tiny_model("llama", num_layers=8, vocab_size=len(tok))
    else:
        from slam.models import load_model_and_tokenizer, resolve_model

        model, tok = load_model_and_tokenizer(resolve_model(a.model), device="cpu")
    rows, passes = [], {}
    for setting in a.settings.split(","):
        cfg = replace(ProbeConfig(langs=langs, top_k=a.k, max_questions=a.questions, selection=a.selection),
                      **SETTINGS[setting])
        t0 = time.time()
        if cfg.balance_tokens not in passes:
            lg, _, texts = parallel_questions(records, langs, a.questions)
            passes[cfg.balance_tokens] = collect(model, tok, lg, texts, cfg, neurons=True, cosine=True, progress=False)
        counts = passes[cfg.balance_tokens]
        for method in a.methods.split(","):
            if setting in ("layer", "before") and method != "msd" and setting != "before":
                continue  # msd-only settings
            cal = calibrate(counts, method, cfg, langs)
            s = cal["stability"]
            rows.append({"setting": setting, "method": method, "tau": s["split_half_tau"]["mean"],
                         "overlap": s["split_half_overlap"]["mean"], "topk_overlap": s["split_half_topk_overlap"]["mean"],
                         "lolo_min": s["lolo_min_overlap"],
                         "lolo": {lg: v["overlap"] for lg, v in s["leave_one_language_out"].items()},
                         "significant": len(s["significant_layers"]), "stable": s["stable"],
                         "probe_layers": cal["chosen"], "seconds": round(time.time() - t0, 1)})
            print(rows[-1], flush=True)
    print(f"model {a.model}, {a.questions} parallel questions x {len(langs)} languages, k={a.k}, "
          f"selection {a.selection}; load: {os.getloadavg()[0]:.1f} (1-min avg)")
    print(f"{'setting':8s} {'method':7s} {'tau':>6s} {'ovl':>5s} {'top-k':>6s} {'LOLO min':>8s} {'signif':>6s} "
          f"{'stable':>6s}  probe layers")
    for r in rows:
        print(f"{r['setting']:8s} {r['method']:7s} {r['tau']:6.2f} {r['overlap']:5.1f} {r['topk_overlap']:6.1f} "
              f"{str(r['lolo_min']):>8s} {r['significant']:6d} {str(r['stable']):>6s}  {r['probe_layers']}"
              f"   LOLO {r['lolo']}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
