"""Thin Kubeflow Pipelines components: typed artifacts in/out, one call into `slam.steps` each.

    from components import prepare_data, probe_layers, tune_layer_count, train_slam, evaluate, register_model

Each component runs in the project image (`SLAM_IMAGE`, default `IMAGE` below) on a cluster, and in the
current Python env under `kfp.local.SubprocessRunner(use_venv=False)` (`slam demo`). Components never
pass weights through KFP: steps write to the storage prefix (local dir or s3://) and the artifacts carry
pointers (`metadata["uri"]` + a small JSON file), see `slam.steps.write_pointer`.
"""

from components.evaluate import evaluate
from components.prepare_data import prepare_data
from components.probe_layers import probe_layers
from components.register_model import register_model
from components.train_slam import train_slam
from components.tune_layer_count import tune_layer_count

__all__ = ["evaluate", "prepare_data", "probe_layers", "register_model", "train_slam", "tune_layer_count"]
