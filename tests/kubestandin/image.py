"""The "image" for the steps-as-pods stand-in: the project built as a wheel, installed into a scratch venv
whose other packages are the test venv's own (symlinked), without the editable install.

    img = build_image(Path("/tmp/x/image"))       # ~15 s: wheel + venv + symlinks + pip install --no-deps
    img.python, img.bin, img.env()                # what a pod / Ray node of that image runs with

What a pod of this image can import is exactly what `pip install .` puts in a container (slam, components,
pipeline) plus the pinned dependencies: the repo checkout is not on its path, and the steps-as-pods
runner (kfp.py) also hides it from the filesystem. The test venv's `__editable__` finder and its `.pth`
are not linked, so nothing maps `slam` back to the source tree.

Also baked in, as a Dockerfile would:
- `_standin_pod_policy` (+ a .pth that imports it): with STANDIN_POD_NETWORK="host:port,…" set (the
  runner sets it on step pods) every socket.connect to anything else raises PermissionError - only the
  cluster's services (S3, MLflow, the API server) are reachable from a pod;
- a warm DeepSpeed JIT cache (TORCH_EXTENSIONS_DIR), when the test environment has one, as an image
  that pre-built its ops would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_POLICY = '''"""kube stand-in network policy for step pods: only STANDIN_POD_NETWORK's host:port pairs are reachable."""
import os
import sys

_allowed = os.environ.get("STANDIN_POD_NETWORK", "")
if _allowed:
    _pairs = {(h, int(p)) for h, _, p in (x.rpartition(":") for x in _allowed.split(",") if x)}

    def _hook(event, args):
        if event == "socket.connect":
            addr = args[1]
            if isinstance(addr, tuple) and len(addr) >= 2 and (str(addr[0]), int(addr[1])) not in _pairs:
                raise PermissionError(f"kube stand-in network policy: {addr[0]}:{addr[1]} is not a cluster service")

    sys.addaudithook(_hook)
'''


@dataclass(frozen=True)
class Image:
    root: Path
    wheel: Path
    build_s: float

    @property
    def bin(self) -> Path:
        return self.root / "venv" / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def torch_extensions(self) -> Path:
        return self.root / "cache" / "torch_extensions"

    def env(self, home: Path) -> dict[str, str]:
        """The image's own environment (Dockerfile ENV), for a container with HOME=home."""
        env = {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "RAY_USAGE_STATS_ENABLED": "0", "LANG": "C.UTF-8", "VIRTUAL_ENV": str(self.root / "venv")}
        if self.torch_extensions.is_dir():
            env["TORCH_EXTENSIONS_DIR"] = str(self.torch_extensions)
        return env


def _linkable(name: str) -> bool:
    return not (name.startswith("__editable__") or (name.startswith("slam-") and name.endswith(".dist-info"))
                or name == "__pycache__")


def build_image(root: Path, repo: Path = REPO) -> Image:
    t0 = time.monotonic()
    root = Path(root)
    wheels, venv = root / "wheels", root / "venv"
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(repo)], check=True, env=env, timeout=300,
                   cwd=str(root))
    (wheel,) = wheels.glob("slam-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--symlinks", str(venv)], check=True, env=env,
                   timeout=120)
    src = Path(sysconfig.get_paths()["purelib"])
    dst = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True, env=env, timeout=60).stdout.strip())
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if _linkable(entry.name) and not (dst / entry.name).exists():
            (dst / entry.name).symlink_to(entry)
    (dst / "_standin_pod_policy.py").write_text(_POLICY)
    (dst / "zz_standin_pod_policy.pth").write_text("import _standin_pod_policy\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-compile", "--disable-pip-version-check", str(wheel)], check=True, env=env, timeout=300)
    warm = Path(os.environ.get("TORCH_EXTENSIONS_DIR", REPO / ".cache" / "torch_extensions"))
    if warm.is_dir():
        shutil.copytree(warm, root / "cache" / "torch_extensions", dirs_exist_ok=True)
    return Image(root=root, wheel=wheel, build_s=time.monotonic() - t0)
