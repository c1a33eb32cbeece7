"""Models by URI: `slam models import` takes a GGUF file (any architecture transformers reads from GGUF),
a model baked into the image is found without an import, and the Dockerfile can bake one.

    .venv/bin/python -m pytest -q tests/test_models_uri.py        # -m slow: the real GGUF import by path
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("name", "message"), [
    ("qwen", "not a .gguf file"),
    ("{tmp}/missing.gguf", "GGUF file not found"),
])
def test_import_refuses_what_is_not_a_gguf_file_in_one_line(name, message, tmp_path, capsys):
    from slam.cli import main

    assert main(["models", "import", name.format(tmp=tmp_path), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_a_gguf_transformers_cannot_read_is_one_line(tmp_path, capsys):
    from slam.cli import main

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    assert main(["models", "import", str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot import broken.gguf" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_a_baked_smollm2_is_used_as_is(smollm2_dir, tmp_path, monkeypatch):
    from slam.models import resolve_model

    baked = tmp_path / "opt-models"
    baked.mkdir()
    (baked / "smollm2-135m-instruct").symlink_to(smollm2_dir, target_is_directory=True)
    monkeypatch.setenv("SLAM_BAKED_MODELS", str(baked))
    monkeypatch.setenv("SLAM_MODELS_DIR", str(tmp_path / "empty-cache"))  # nothing imported there
    assert resolve_model("pypi:smollm2") == str(baked / "smollm2-135m-instruct")
    assert not (tmp_path / "empty-cache" / "smollm2-135m-instruct").exists()


def test_the_dockerfile_can_bake_a_model():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r'^ARG BAKE_MODEL=""$', text, re.M)
    assert "COPY --from=builder /opt/slam/models /opt/slam/models" in text
    assert "SLAM_BAKED_MODELS=/opt/slam/models" in text
    assert "slam models import smollm2 --out /opt/slam/models/smollm2-135m-instruct" in text
    assert (REPO / "bake" / "README.md").is_file()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "bake" not in ignored and "bake/" not in ignored


@pytest.mark.slow
def test_import_a_gguf_by_path_equals_the_packaged_import(smollm2_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from slam.cli import main
    from slam.models import smollm2_gguf_path

    out = tmp_path / "by-path"
    assert main(["models", "import", str(smollm2_gguf_path()), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    a, b = load_file(out / "model.safetensors"), load_file(Path(smollm2_dir) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert '"sha256"' in (out / "slam_source.json").read_text()
