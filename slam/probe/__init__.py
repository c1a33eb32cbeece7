"""Layer probing: measure which decoder layers of *this* model handle language (the "S" in SLAM).

    from slam.probe import run_probe, select_layers
    report = run_probe(model, tok, records, ProbeConfig(method="msd", langs=["en", "de", "zh"], top_k=6))
    report["selected_layers"]                                  # -> slam plan / training
    select_layers(report, k=4, selection="contiguous")         # re-select for another k (training, Tune)

CLI: `slam probe --model PATH --data probe.jsonl --langs en,de,zh --method msd --top-k 6 --out runs/probe`.

Parallel questions (same problem_id in every language) go through the frozen model; forward hooks keep
streaming counts only (per block of problems: fire counts per language and neuron, cosine sums per
language pair), so memory does not grow with the data. Methods (each a statistic of per-language
aggregates, see scores.py):

- `msd` (SLAM, reconstructed): a neuron is *activated* for language L when its firing rate in L is more
  than `activation_margin` above its mean over languages (`activation=neuron`; `layer` = the layer's top
  10%, `fixed` = fires on >= fire_fraction of tokens, the saturating original). Per layer and language:
  n = activated share and o = Jaccard overlap with English's set; score = MSD over languages of n plus
  MSD over the non-English languages of o.
- `lape` (Tang et al. 2024): per-neuron activation probability per language, normalised over languages;
  score = the layer's mean specificity log(L) - entropy over strongly active neurons.
- `cosine`: per layer, cosine similarity of the token-mean hidden state of each question with its
  English parallel; score = 1 - mean similarity. Cumulative over depth (it reads the residual stream).

Calibration (calibrate.py): each statistic is recomputed with language labels shuffled within parallel
problems; layers are ranked by their excess over that null (z and p-values reported), and every run
reports split-half and leave-one-language-out stability. An unstable probe trains bottom-k instead.
Token counts are balanced across languages; special tokens (BOS, padding) are never counted.

| module | what |
|---|---|
| `collect.py` | parallel questions; one forward pass with hooks keeping per-block streaming counts |
| `scores.py` | per-layer language-specificity statistics (msd, lape, cosine), Kendall tau |
| `calibrate.py` | the language-shuffled null, split-half and leave-one-language-out stability, the verdict |
| `select.py` | ranking and selection policies (top-k, contiguous, bottom-k, random-k, top-layers) |
| `run.py` | `run_probes`: validate, collect, calibrate, select -> probe.json content |
| `report.py` | the one renderer: layer x language heatmap, scores chart, summary.md (CLI, pipeline, MLflow) |
"""

from slam.probe.run import REPORT_VERSION, check_probe_inputs, run_probe, run_probes
from slam.probe.select import METHODS, PROBE_SELECTIONS, SELECTIONS, rank_layers, select_layers

__all__ = ["METHODS", "PROBE_SELECTIONS", "REPORT_VERSION", "SELECTIONS", "check_probe_inputs", "rank_layers",
           "run_probe", "run_probes", "select_layers"]
