"""KFP component: SLAM fine-tuning (Ray Train + DeepSpeed) of the layers the tune step decided.

    python -c "from components import train_slam"   # used by pipeline/pipeline.py
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import COMPONENT_KW


@dsl.component(**COMPONENT_KW)
def train_slam(
    base_model: str,
    dataset: Input[Dataset],
    probe: Input[Artifact],
    tuned: Input[Artifact],
    preset: str,
    overrides: list,
    launcher: str,
    storage: str,
    mlflow_uri: str,
    experiment: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    delta: Output[Model],
    metrics: Output[Metrics],
    summary: Output[Markdown],
    loss_curve: Output[HTML],
) -> str:
    """`tuned` = the tune step's tune.json (the decided layers, and lr when it was searched). Returns the
    trained layers as "i,j,k"; `delta` points at the delta (never the weights themselves)."""
    from components.io import publish, read_pointer
    from slam import steps

    result = steps.train_slam(storage=storage, base_model=base_model, data_uri=read_pointer(dataset),
                              probe_uri=read_pointer(probe), tune_uri=read_pointer(tuned), preset=preset,
                              overrides=overrides, launcher=launcher, mlflow_uri=mlflow_uri,
                              experiment=experiment, pipeline_run_id=pipeline_run_id,
                              pipeline_run_name=pipeline_run_name)
    publish(result, delta, metrics=metrics, markdown=summary, html=loss_curve)
    return result["outputs"]["layers"]
