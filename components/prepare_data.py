"""KFP component: decide the training data and its languages (synthesize, use a built set, or build from
language folders the schedule watches); publish the dataset under the storage prefix.

    python -c "from components import prepare_data"   # used by pipeline/pipeline.py; run via `slam pipeline`
"""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Metrics, Output

from components.image import COMPONENT_KW


@dsl.component(**COMPONENT_KW)
def prepare_data(
    languages: str,
    train_data: str,
    synth_problems: int,
    synth_seed: int,
    languages_uri: str,
    registry_name: str,
    storage: str,
    mlflow_uri: str,
    experiment: str,
    pipeline_run_id: str,
    pipeline_run_name: str,
    dataset: Output[Dataset],
    summary: Output[Markdown],
    metrics: Output[Metrics],
) -> str:
    """Returns the languages to train and evaluate on ("en,de,sw"), or "" when `languages_uri` holds no
    language the champion was not trained on: the rest of the pipeline is then skipped."""
    from components.io import publish
    from slam import steps

    result = steps.prepare_data(storage=storage, languages=languages, train_data=train_data,
                                synth_problems=synth_problems, synth_seed=synth_seed, languages_uri=languages_uri,
                                registry_name=registry_name, mlflow_uri=mlflow_uri, experiment=experiment,
                                pipeline_run_id=pipeline_run_id, pipeline_run_name=pipeline_run_name)
    publish(result, dataset, markdown=summary, metrics=metrics)
    return result["outputs"]["languages"] if result["outputs"]["changed"] else ""
