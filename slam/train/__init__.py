"""SLAM fine-tuning: what trains, how, and where it lands.

    from slam.train import resolve_layers, train_local, train_loop
    cfg = resolve_layers(cfg)                  # decide train.layers once (from the probe when not given)
    metrics = train_local(cfg)                 # no Ray; slam.distributed.train.fit(cfg) is the Ray twin

| module | what |
|---|---|
| `loop.py` | `train_loop`: the recipe, top to bottom (setup, freeze, data, engine, resume, loop, save, metrics) |
| `runs.py` | a run's identity, decided before workers start: layers, name, stages, delta location, input checks |
| `batches.py` | dataset split -> tokenized examples -> the deterministic step -> micro-batch schedule; lr schedule |
| `loss.py` | response-only loss in checkpointed chunks (full logits never materialized) |
| `engines.py` | DeepSpeed / torch engines behind one interface; process group; RNG state |
| `local.py` | `train_local` and `LocalSession`: the loop without Ray |
| `report.py` | what a run shows: live MLflow metrics, a progress line with ETA, end-of-run artifacts |
"""

from slam.train.local import LocalSession, train_local
from slam.train.loop import InjectedFault, train_loop
from slam.train.runs import check_inputs, delta_uri, resolve_layers, run_name_for, stages_for

__all__ = ["InjectedFault", "LocalSession", "check_inputs", "delta_uri", "resolve_layers", "run_name_for",
           "stages_for", "train_local", "train_loop"]
