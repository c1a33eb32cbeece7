"""KFP component: probe the base model for language-specific layers; publish probe.json + heatmap.

    python -c "from components import probe_layers"   # used by pipeline/pipeline.py
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from components.image import COMPONENT_KW


@dsl.component(**COMPONENT_KW)
def probe_layers(
    base_model: str,
    dataset: Input[Dataset],
    languages: str,
    method: str,
    top_k: int,
    selection: str,
    max_questions: int,
    storage: str,
    mlflow_uri: str,
    experiment: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    probe: Output[Artifact],
    metrics: Output[Metrics],
    heatmap: Output[HTML],
    table: Output[Markdown],
) -> str:
    """Returns the selected layers as "i,j,k" (the full report is behind the `probe` pointer)."""
    from components.io import publish, read_pointer
    from slam import steps

    result = steps.probe_layers(storage=storage, base_model=base_model, data_uri=read_pointer(dataset),
                                languages=languages, method=method, top_k=top_k, selection=selection,
                                max_questions=max_questions, mlflow_uri=mlflow_uri, experiment=experiment,
                                pipeline_run_id=pipeline_run_id, pipeline_run_name=pipeline_run_name)
    publish(result, probe, metrics=metrics, markdown=table, html=heatmap)
    return result["outputs"]["selected_layers"]
