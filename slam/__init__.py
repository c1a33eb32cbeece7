"""slam — Selective Language Alignment (arXiv 2501.03681) as a library, a CLI and a Kubeflow pipeline.

Run `slam --help` (or `python -m slam --help`) for the steps. The library never imports kfp; only
`slam.ray_backend` imports ray.
"""

__version__ = "0.1.0"
