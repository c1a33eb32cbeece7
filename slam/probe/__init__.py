"""Layer probing: measure which decoder layers of *this* model handle language (the "S" in SLAM).

    from slam.probe import run_probe, select_layers
    report = run_probe(model, tok, records, ProbeConfig(method="msd", langs=["en", "de", "zh"], top_k=6))
    report["selected_layers"]                                  # -> slam plan / training
    select_layers(report, k=4, selection="contiguous")         # re-select for another k (training, Tune)

CLI: `slam probe --model PATH --data probe.jsonl --langs en,de,zh --method msd --top-k 6 --out runs/probe`.

Parallel questions (same problem_id in every language) go through the frozen model; forward hooks keep
streaming statistics only (per-neuron fire counts per language as int64 counters on the model's
device, or per-layer running cosine sums), so memory does not grow with the data. Methods:

- `msd` (SLAM, reconstructed): a neuron of layer l is *activated* for language L when its FFN
  intermediate activation act(gate x) (act(fc1 x) for non-gated FFNs) exceeds `threshold` on at least
  a share `fire_fraction` of L's tokens. Per layer and language: n = |A_L| / width and the overlap with
  English o = |A_L ∩ A_en| / |A_L ∪ A_en| (Jaccard: it drops whether L gains or loses neurons vs
  English). score_l = MSD_L(n) + MSD_L(o), MSD = mean squared deviation from the mean over languages.
- `lape` (Tang et al. 2024): per-neuron activation probability per language, normalised over
  languages; neurons whose entropy is in the lowest `lape_entropy_quantile` of all neurons (and whose
  probability exceeds the `lape_prob_quantile` quantile for some language) are language-specific;
  score_l = their count / width.
- `cosine`: per layer, cosine similarity of the token-mean hidden state (layer output) of each question
  with its English parallel; score_l = 1 - mean similarity (higher = more language-specific). It sees
  what the residual stream carries, so it is cumulative over depth, unlike the two neuron methods.

Special tokens (BOS, padding) are excluded from every statistic: they are the same in every language.


from __future__ import annotations

| module | what |
|---|---|
| `collect.py` | parallel questions; one forward pass with hooks keeping streaming counts only |
| `scores.py` | per-layer language-specificity scores from those counts (msd, lape, cosine) |
| `select.py` | ranking and selection of the k layers (top-k, contiguous) |
| `run.py` | `run_probes`: validate, collect, score, select -> probe.json content |
| `report.py` | the one renderer: layer x language heatmap, scores chart, summary.md (CLI, pipeline, MLflow) |
"""

from slam.probe.run import REPORT_VERSION, check_probe_inputs, run_probe, run_probes
from slam.probe.select import METHODS, SELECTIONS, rank_layers, select_layers

__all__ = ["METHODS", "REPORT_VERSION", "SELECTIONS", "check_probe_inputs", "rank_layers", "run_probe", "run_probes",
           "select_layers"]
