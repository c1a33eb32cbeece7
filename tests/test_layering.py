"""Architecture rules, checked on the source: slam/ is the floor of the house.

- nothing in slam/ imports kfp, pipeline or components, nor reaches them through importlib/__import__
  tricks (string module names), and only slam/distributed/ imports ray;
- the one sanctioned way up is a plugin hook: slam/cli.py loads subcommands from the `slam.commands`
  entry-point group (pyproject.toml), which the pipeline package fills. That is the single named exception.

    .venv/bin/python -m pytest -q tests/test_layering.py
"""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLAM = REPO / "slam"
UPWARD = {"kfp", "pipeline", "components"}
# The single sanctioned exception: (file, what it may use) — see the module docstring.
ENTRY_POINT_EXCEPTION = ("cli.py", "entry_points")
DYNAMIC_IMPORTERS = {"import_module", "__import__", "find_spec", "spec_from_file_location", "load_module",
                     "entry_points", "exec_module", "SourceFileLoader"}


def _names_upper_module(text: str) -> bool:
    """'pipeline.local' names a module of the packages above slam (a file that exists); 'pipeline.yaml' does not."""
    parts = text.split(".")
    if len(parts) < 2 or parts[0] not in UPWARD or not all(p.isidentifier() for p in parts):
        return False
    if parts[0] == "kfp":  # a tag like "kfp.run_id" is not a module
        try:
            return importlib.util.find_spec(text) is not None
        except ModuleNotFoundError:
            return False
    return REPO.joinpath(*parts[:-1], parts[-1] + ".py").is_file() or REPO.joinpath(*parts).is_dir()


def _findings(path: Path) -> list[str]:
    rel = path.relative_to(SLAM).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        mods: list[str] = []
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module]
        for m in mods:
            top = m.split(".")[0]
            if top in UPWARD:
                out.append(f"{rel} imports {m}")
            if top == "ray" and not rel.startswith("distributed/"):
                out.append(f"{rel} imports ray (only slam/distributed/ may)")
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in DYNAMIC_IMPORTERS and (rel, name) != ENTRY_POINT_EXCEPTION:
                literal = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                # find_spec of a data-only third-party package (the packaged GGUF) is not an import of ours
                if not (name == "find_spec" and literal and literal[0].split(".")[0] not in UPWARD | {"slam"}):
                    out.append(f"{rel} calls {name}({', '.join(map(repr, literal)) or '…'})")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _names_upper_module(node.value):
            out.append(f"{rel} names module {node.value!r}")
    return out


def test_slam_never_reaches_up_and_only_distributed_imports_ray():
    offenders = [f for p in sorted(SLAM.rglob("*.py")) for f in _findings(p)]
    assert not offenders, offenders


@pytest.mark.parametrize("source, expected", [
    ("import kfp", "imports kfp"),
    ("from pipeline.local import run_local", "imports pipeline.local"),
    ("import components.io", "imports components.io"),
    ("import importlib\nimportlib.import_module('pipeline.demo')", "calls import_module('pipeline.demo')"),
    ("__import__('components')", "calls __import__('components')"),
    ("m = 'pipeline.kfp_client'", "names module 'pipeline.kfp_client'"),
    ("from importlib.metadata import entry_points\nentry_points(group='x')", "calls entry_points"),
    ("import ray", "imports ray"),
])
def test_the_rule_catches_each_way_up(tmp_path, monkeypatch, source, expected):
    """The checker itself must fail on every form it forbids (a rule that cannot fail proves nothing)."""
    monkeypatch.setattr(sys.modules[__name__], "SLAM", tmp_path)
    f = tmp_path / "evil.py"
    f.write_text(source)
    assert any(expected in x for x in _findings(f)), _findings(f)


def test_importing_every_slam_module_loads_neither_kfp_nor_ray_nor_the_pipeline():
    mods = sorted(
        ".".join(("slam", *f.relative_to(SLAM).with_suffix("").parts))
        for f in SLAM.rglob("*.py")
        if f.name != "__main__.py" and "distributed" not in f.parts
    )
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
            "print(sorted(k for k in ('kfp', 'ray', 'pipeline', 'components') if k in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
