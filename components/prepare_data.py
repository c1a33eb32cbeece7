"""KFP component: build (or synthesize) the SLAM training set and publish it under the storage prefix.

    python -c "from components import prepare_data"   # used by pipeline/pipeline.py; run via `slam pipeline`
"""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components.image import COMPONENT_KW


@dsl.component(**COMPONENT_KW)
def prepare_data(
    languages: str,
    train_data: str,
    synth_problems: int,
    synth_seed: int,
    storage: str,
    dataset: Output[Dataset],
    summary: Output[Markdown],
):
    """train_data = a built dataset dir/URI to use as is; empty = synthesize the multilingual world."""
    from components.io import publish
    from slam import steps

    result = steps.prepare_data(storage=storage, languages=languages, train_data=train_data,
                                synth_problems=synth_problems, synth_seed=synth_seed)
    publish(result, dataset, markdown=summary)
