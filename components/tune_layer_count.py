"""KFP component: decide the layers to train — Ray Tune over how many probed layers (k); returns the best k.

    python -c "from components import tune_layer_count"   # used by pipeline/pipeline.py
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from components.image import COMPONENT_KW


@dsl.component(**COMPONENT_KW)
def tune_layer_count(
    base_model: str,
    dataset: Input[Dataset],
    probe: Input[Artifact],
    k_grid: str,
    preset: str,
    overrides: list,
    launcher: str,
    storage: str,
    mlflow_uri: str,
    experiment: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    results: Output[Artifact],
    metrics: Output[Metrics],
    summary: Output[Markdown],
) -> int:
    """launcher = local (in-process Ray) | kuberay (a RayJob on the cluster); both write under `storage`."""
    from components.io import publish, read_pointer
    from slam import steps

    result = steps.tune_layer_count(storage=storage, base_model=base_model, data_uri=read_pointer(dataset),
                                    probe_uri=read_pointer(probe), k_grid=k_grid, preset=preset,
                                    overrides=overrides, launcher=launcher, mlflow_uri=mlflow_uri,
                                    experiment=experiment, pipeline_run_id=pipeline_run_id,
                                    pipeline_run_name=pipeline_run_name)
    publish(result, results, metrics=metrics, markdown=summary)
    return int(result["outputs"]["best_k"])
