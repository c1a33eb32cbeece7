"""Architecture rules: slam/ never imports kfp; only slam/distributed/ imports ray."""

import ast
import subprocess
import sys
from pathlib import Path

SLAM = Path(__file__).resolve().parents[1] / "slam"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_no_kfp_anywhere_in_slam_and_ray_only_in_distributed():
    offenders = []
    for f in SLAM.rglob("*.py"):
        mods = _imports(f)
        rel = f.relative_to(SLAM).as_posix()
        if "kfp" in mods:
            offenders.append(f"{rel} imports kfp")
        if "ray" in mods and not rel.startswith("distributed/"):
            offenders.append(f"{rel} imports ray")
    assert not offenders, offenders


def test_importing_every_slam_module_loads_neither_kfp_nor_ray():
    mods = sorted(
        ".".join(("slam", *f.relative_to(SLAM).with_suffix("").parts))
        for f in SLAM.rglob("*.py")
        if f.name != "__main__.py" and "distributed" not in f.parts
    )
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
            "print(sorted(k for k in ('kfp', 'ray') if k in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
