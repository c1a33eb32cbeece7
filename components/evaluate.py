"""KFP component: per-language accuracy of the base model or base + SLAM delta; table + chart.

    python -c "from components import evaluate"   # used by pipeline/pipeline.py
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import COMPONENT_KW


@dsl.component(**COMPONENT_KW)
def evaluate(
    base_model: str,
    dataset: Input[Dataset],
    label: str,
    tasks: str,
    languages: str,
    limit: int,
    max_new_tokens: int,
    storage: str,
    mlflow_uri: str,
    experiment: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    benchmarks: str,
    report: Output[Artifact],
    metrics: Output[Metrics],
    table: Output[Markdown],
    chart: Output[HTML],
    delta: Input[Model] = None,
    baseline: Input[Artifact] = None,
) -> float:
    """No `delta` = evaluate the base model. `baseline` = the base's report: the SLAM evaluation then shows
    base vs SLAM per language (numbers, deltas, a grouped bar chart). Returns the average accuracy (0..1)."""
    from components.io import publish, read_pointer
    from slam import steps

    result = steps.evaluate(storage=storage, base_model=base_model, data_uri=read_pointer(dataset),
                            delta_uri=read_pointer(delta) if delta is not None else "", label=label,
                            tasks=tasks, languages=languages, limit=limit, max_new_tokens=max_new_tokens,
                            baseline_uri=read_pointer(baseline) if baseline is not None else "",
                            benchmarks=benchmarks, mlflow_uri=mlflow_uri, experiment=experiment,
                            pipeline_run_id=pipeline_run_id, pipeline_run_name=pipeline_run_name)
    publish(result, report, metrics=metrics, markdown=table, html=chart)
    return float(result["outputs"]["average"])
