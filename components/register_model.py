"""KFP component: register the SLAM delta in the MLflow registry (idempotent), gate the alias on eval.

    python -c "from components import register_model"   # used by pipeline/pipeline.py
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output

from components.image import COMPONENT_KW


@dsl.component(**COMPONENT_KW)
def register_model(
    base_model: str,
    delta: Input[Model],
    probe: Input[Artifact],
    slam_eval: Input[Artifact],
    base_eval: Input[Artifact],
    registry_name: str,
    gate_margin: float,
    mlflow_uri: str,
    experiment: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    card: Output[Markdown],
    metrics: Output[Metrics],
) -> NamedTuple("Registered", version=str, alias=str):
    """Returns the model version and the alias it got (empty when the promotion gate said no)."""
    from collections import namedtuple

    from components.io import publish, read_pointer
    from slam import steps

    result = steps.register_model(base_model=base_model, delta_uri=read_pointer(delta),
                                  probe_uri=read_pointer(probe), slam_eval_uri=read_pointer(slam_eval),
                                  base_eval_uri=read_pointer(base_eval), registry_name=registry_name,
                                  gate_margin=gate_margin, mlflow_uri=mlflow_uri, experiment=experiment,
                                  pipeline_run_id=pipeline_run_id, pipeline_run_name=pipeline_run_name)
    publish(result, None, markdown=card, metrics=metrics)
    out = namedtuple("Registered", ["version", "alias"])
    return out(str(result["outputs"]["version"]), str(result["outputs"]["alias"]))
