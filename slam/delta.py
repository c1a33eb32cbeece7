"""The SLAM delta: only the tensors training changed, plus a manifest that pins the base they belong to.

    save_delta(model, plan, "s3://bucket/run/delta", {"data_fingerprint": ...})   # published atomically
    model, tok = load_model_with_delta("models/smollm2", "s3://bucket/run/delta")  # wrong base -> SlamError
    merge("models/smollm2", "s3://bucket/run/delta", "out/merged")                 # a plain HF model dir

Layout of a delta dir: `delta.safetensors` (tensor name -> trained value, the full tensor, not a
difference, so applying it is an exact copy) and `manifest.json` (format, base path + fingerprint,
layers, roles, tensor names, trainable count, plus whatever the trainer adds: config/data fingerprints).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from slam import storage
from slam.errors import SlamError

log = logging.getLogger(__name__)

FORMAT = "slam-delta/1"
TENSORS_FILE = "delta.safetensors"
MANIFEST_FILE = "manifest.json"

_fingerprint_cache: dict[tuple, dict[str, str]] = {}


def base_fingerprint(base_path: str | os.PathLike) -> dict[str, str]:
    """Hashes that identify a base model dir: its config and the full bytes of its weight files.

    Weight bytes, not just the config: two fine-tunes of one architecture share a config, and a delta
    trained on one is silently wrong on the other. Cached per process by (path, sizes, mtimes).
    """
    p = Path(base_path)
    files = sorted([*p.glob("*.safetensors"), *p.glob("pytorch_model*.bin")])
    if not (p / "config.json").is_file():
        raise SlamError(f"base model {p} has no config.json")
    key = (str(p.resolve()), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key in _fingerprint_cache:
        return _fingerprint_cache[key]
    cfg = json.loads((p / "config.json").read_text())
    # transformers writes its own version and the dtype it saved with; neither changes the weights' identity
    for k in ("transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    config_sha = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    out = {"config_sha": config_sha, "weights_sha": h.hexdigest()[:16]}
    _fingerprint_cache[key] = out
    return out


def _state_of(model: torch.nn.Module, names: set[str]) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu").clone().contiguous() for n, p in model.named_parameters() if n in names}


def write_delta(model: torch.nn.Module, plan: Any, local_dir: str | os.PathLike,
                manifest_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write delta.safetensors + manifest.json into an existing local dir (checkpoints add their own files)."""
    from safetensors.torch import save_file

    tensors = _state_of(model, plan.names)
    missing = plan.names - set(tensors)
    if missing:
        raise SlamError(f"model lacks tensors the plan names: {sorted(missing)[:3]}")
    extra = dict(manifest_extra or {})
    base_path = extra.pop("base_path", "") or getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    base_dir = extra.pop("base_dir", "") or base_path  # where the URI resolved to on this node
    base = {"path": str(base_path), "model_type": plan.model_type, "num_layers": plan.num_layers}
    if base_dir and Path(base_dir).is_dir():
        base.update(base_fingerprint(base_dir))
    manifest = {
        "format": FORMAT, "base": base, "layers": list(plan.layers), "roles": list(plan.roles),
        "tensors": sorted(tensors), "trainable": plan.trainable, "total": plan.total,
        "fraction": plan.trainable / plan.total if plan.total else 0.0,
        "dtype": str(next(iter(tensors.values())).dtype).replace("torch.", ""), **extra,
    }
    d = Path(local_dir)
    save_file(tensors, str(d / TENSORS_FILE), metadata={"format": FORMAT})
    manifest["delta_sha"] = storage.fingerprint_bytes((d / TENSORS_FILE).read_bytes())
    (d / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def save_delta(model: torch.nn.Module, plan: Any, out_dir: str | os.PathLike,
               manifest_extra: dict[str, Any] | None = None) -> str:
    """Write the plan's tensors + manifest to `out_dir` (local or s3://), atomically. Returns the URI."""
    with tempfile.TemporaryDirectory(prefix="slam-delta-") as tmp:
        write_delta(model, plan, tmp, manifest_extra)
        storage.publish_dir(tmp, out_dir)
    log.info("delta: %d tensors, %d parameters -> %s", len(plan.tensors), plan.trainable, out_dir)
    return str(out_dir)


def fingerprint(delta_dir: str | os.PathLike) -> str:
    """sha256 over a local delta dir's files (names + bytes, the publish marker excluded): its identity,
    e.g. one registered model version per fingerprint."""
    d = Path(delta_dir)
    h = hashlib.sha256()
    for f in sorted(p for p in d.rglob("*") if p.is_file() and p.name != storage.SUCCESS):
        h.update(f.relative_to(d).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def read_manifest(delta_uri: str | os.PathLike) -> dict[str, Any]:
    uri = storage.join(delta_uri, MANIFEST_FILE)
    if not storage.exists(uri):
        raise SlamError(f"{delta_uri} is not a SLAM delta dir (no {MANIFEST_FILE})")
    m = storage.read_json(uri)
    if not isinstance(m, dict):
        raise SlamError(f"{delta_uri}: malformed {MANIFEST_FILE} (not a JSON object)")
    if m.get("format") != FORMAT:
        raise SlamError(f"{delta_uri} is not a SLAM delta (manifest format {m.get('format')!r}, expected {FORMAT})")
    if not isinstance(m.get("tensors"), list) or not isinstance(m.get("layers"), list):
        raise SlamError(f"{delta_uri}: malformed {MANIFEST_FILE} (no tensors/layers lists)")
    if not storage.exists(storage.join(delta_uri, TENSORS_FILE)):
        raise SlamError(f"{delta_uri} is not a SLAM delta dir (no {TENSORS_FILE})")
    return m


def load_delta(delta_uri: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, manifest) of a delta dir, local or s3://."""
    from safetensors.torch import load_file

    # one snapshot of the dir, checked against its published manifest: never a new delta.safetensors
    # with the previous manifest.json
    with storage.local_copy(delta_uri) as d:
        try:
            manifest = read_manifest(d)
        except SlamError as e:
            raise SlamError(str(e).replace(str(d), str(delta_uri))) from None
        try:
            tensors = load_file(str(Path(d) / TENSORS_FILE))
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
            raise SlamError(f"{delta_uri}: {TENSORS_FILE} is not a readable safetensors file "
                            f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    if sorted(tensors) != manifest["tensors"]:
        raise SlamError(f"{delta_uri}: delta.safetensors does not hold the tensors its manifest lists")
    return tensors, manifest


def check_base(base_path: str | os.PathLike, manifest: dict[str, Any], delta_uri: str = "") -> None:
    """Refuse a base that is not the one the delta was trained on (config or weights differ)."""
    want = manifest.get("base", {})
    if "weights_sha" not in want:
        raise SlamError(f"delta {delta_uri} has no base fingerprint in its manifest; cannot verify the base")
    got = base_fingerprint(base_path)
    diffs = [k for k in ("config_sha", "weights_sha") if got[k] != want[k]]
    if diffs:
        raise SlamError(
            f"wrong base model: {base_path} does not match the base of delta {delta_uri} "
            f"(trained on {want.get('path', '?')}; {' and '.join(d.split('_')[0] for d in diffs)} differ)")


def apply_delta(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy the delta's tensors into `model` in place (exact values, cast to the model's dtype)."""
    params = dict(model.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise SlamError(f"delta names tensors this model does not have: {missing[:3]}")
    with torch.no_grad():
        for name, value in tensors.items():
            if tuple(params[name].shape) != tuple(value.shape):
                raise SlamError(f"delta tensor {name} has shape {tuple(value.shape)}, model has "
                                f"{tuple(params[name].shape)}")
            params[name].copy_(value.to(params[name].dtype))


def load_model_with_delta(base_path: str | os.PathLike, delta_uri: str | os.PathLike, dtype: str = "auto",
                          device: torch.device | str | None = None):
    """Base model (any URI slam.models.resolve_model takes) + delta, ready for evaluation: (model, tokenizer).
    A wrong base is refused."""
    from slam.models import load_model_and_tokenizer, resolve_model

    tensors, manifest = load_delta(delta_uri)
    base_dir = resolve_model(str(base_path))
    check_base(base_dir, manifest, str(delta_uri))
    model, tok = load_model_and_tokenizer(base_dir, dtype=dtype, device=device)
    apply_delta(model, tensors)
    return model.eval(), tok


def merge(base: str | os.PathLike, delta_uri: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """Materialize base + delta as a full HF model dir (weights + tokenizer) at `out_dir` (atomic)."""
    manifest = read_manifest(delta_uri)
    # keep the dtype training produced: merging fp32 deltas into a bf16 copy would round them
    dtype = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(manifest.get("dtype", ""),
                                                                                     "float32")
    model, tok = load_model_with_delta(base, delta_uri, dtype=dtype, device="cpu")
    with tempfile.TemporaryDirectory(prefix="slam-merge-") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (Path(tmp) / "slam_delta.json").write_text(json.dumps(
            {"base": str(base), "delta": str(delta_uri), "manifest": manifest}, indent=2) + "\n")
        storage.publish_dir(tmp, out_dir)
    log.info("merged %s + %s -> %s", base, delta_uri, out_dir)
    return str(out_dir)
