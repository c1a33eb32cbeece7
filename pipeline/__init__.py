"""The SLAM Kubeflow pipeline (wiring and resources only) and its CLI (`slam pipeline …`).

    from pipeline.pipeline import build_pipeline, CompileOptions
    slam pipeline compile --out pipeline.yaml
"""
