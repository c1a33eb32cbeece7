"""KFP artifact I/O for the components: pointers in, step results out.

    data_uri = read_pointer(dataset)                          # the storage URI an input artifact points at
    publish(result, probe, metrics=metrics, markdown=table, html=heatmap)   # a slam.steps result -> artifacts

Components never pass weights or datasets through KFP: steps write to the storage prefix (local dir or
s3://) and an output artifact carries a pointer (`metadata["uri"]` + a small JSON file at its path).
Figures a step returns (PNG bytes) become one self-contained HTML page, which the KFP UI renders.
"""

import base64
import html as html_lib
import json
from pathlib import Path
from typing import Any

from slam.errors import SlamError


def read_pointer(artifact: Any) -> str:
    """The URI a KFP input artifact points at (metadata first, then the pointer file)."""
    if artifact is None:
        return ""
    uri = (getattr(artifact, "metadata", None) or {}).get("uri")
    if uri:
        return str(uri)
    try:
        return json.loads(Path(artifact.path).read_text())["uri"]
    except (OSError, ValueError, KeyError) as e:
        raise SlamError(f"artifact {getattr(artifact, 'name', '?')} carries no storage URI: {e}") from None


def write_pointer(artifact: Any, uri: str, extra: dict[str, Any] | None = None) -> None:
    artifact.metadata["uri"] = uri
    for k, v in (extra or {}).items():
        artifact.metadata[k] = v
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps({"uri": uri, **(extra or {})}, indent=2) + "\n")


def figures_html(figures: dict[str, bytes]) -> str:
    """One HTML page with every figure embedded as a base64 PNG under its title."""
    parts = [f"<h2>{html_lib.escape(title)}</h2><img alt='{html_lib.escape(title)}' "
             f"src='data:image/png;base64,{base64.b64encode(png).decode()}'/>" for title, png in figures.items()]
    title = html_lib.escape(next(iter(figures), "slam"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            + "".join(parts) + "</body></html>\n")


def publish(result: dict, pointer: Any = None, *, metrics: Any = None, markdown: Any = None,
            html: Any = None) -> None:
    """Write a step result into KFP output artifacts (any object with .path and .metadata)."""
    if pointer is not None:
        write_pointer(pointer, result["uri"], {k: v for k, v in result.get("outputs", {}).items()
                                               if isinstance(v, (str, int, float, bool))})
    if metrics is not None:
        for name, value in result.get("metrics", {}).items():
            if value is not None:
                metrics.log_metric(name, float(value))
    pages = {"markdown": result.get("markdown") or "(no markdown output)\n",
             "html": figures_html(result["figures"]) if result.get("figures") else "(no figures)\n"}
    for art, key in ((markdown, "markdown"), (html, "html")):
        if art is not None:
            Path(art.path).parent.mkdir(parents=True, exist_ok=True)
            Path(art.path).write_text(pages[key], encoding="utf-8")
    seconds = result.get("outputs", {}).get("seconds")
    for art in (pointer, markdown, html):
        if art is not None and seconds is not None:
            art.metadata["seconds"] = seconds  # read back by pipeline.local.step_times (demo timing)
