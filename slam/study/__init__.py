"""The ablation study behind SLAM's claim: does the probe's layer choice matter, and does one-stage SLAM
match the two-stage recipe? Every arm trains on the same data and budget, is evaluated on the same
questions, and is compared with paired bootstrap confidence intervals.

    slam study run --out runs/study                       # SmolLM2 + synthetic world, 3 seeds (background: --background)
    slam study report --out runs/study                    # re-print the table of a (partly) finished study
    from slam.study import StudyConfig, run_study

| module | what |
|---|---|
| `plan.py` | StudyConfig, the arms and their units (arm x repetition), each unit's training config |
| `run.py` | probe once, train + evaluate each unit (resumable), MLflow runs under one parent |
| `stats.py` | answer-format share, paired bootstrap intervals |
| `report.py` | summary.json, table.md, study.png |
"""

from slam.study.plan import ARMS, StudyConfig
from slam.study.run import run_study

__all__ = ["ARMS", "StudyConfig", "run_study"]
