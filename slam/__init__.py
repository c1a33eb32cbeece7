"""slam — Selective Language Alignment (arXiv 2501.03681) as a library, a CLI and a Kubeflow pipeline.

Run `slam --help` (or `python -m slam --help`) for the steps; the README's layout table says where each
concern lives. The library never imports kfp, `pipeline/` or `components/`; only `slam.distributed`
imports ray.
"""

__version__ = "0.1.0"
