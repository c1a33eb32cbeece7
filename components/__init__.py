"""Thin Kubeflow Pipelines components: typed artifacts in/out, one call into `slam.steps` each.

    from components.train_slam import train_slam     # one module per component (used by pipeline/pipeline.py)

Each component runs in the project image (`SLAM_IMAGE`, default in components/image.py) on a cluster, and in the
current Python env under `kfp.local.SubprocessRunner(use_venv=False)` (`slam demo`). Components never
pass weights through KFP: steps write to the storage prefix (local dir or s3://) and the artifacts carry
pointers (`metadata["uri"]` + a small JSON file), see `components.io`.

This package imports nothing itself: inside a step's executor `kfp.dsl` is the runtime subset (no
`dsl.component`), and a step only needs `components.io`.
"""
