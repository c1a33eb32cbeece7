"""The image every component runs in: the project's own (Dockerfile at the repo root), overridable.

    SLAM_IMAGE=registry.example.com/slam:0.1.0 slam pipeline compile --out pipeline.yaml
"""

import os

DEFAULT_IMAGE = "ghcr.io/slam-project/slam:0.1.0"
# Read at import (= compile) time: the image is baked into the compiled IR.
IMAGE = os.environ.get("SLAM_IMAGE", DEFAULT_IMAGE)
# The image already has the pinned kfp; never let a task pip-install it (no network needed on the cluster
# or in CI, and no chance of a different kfp than the one that compiled the pipeline).
COMPONENT_KW = dict(base_image=IMAGE, install_kfp_package=False)
