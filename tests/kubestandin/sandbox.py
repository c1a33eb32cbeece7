"""A pod's filesystem view for the stand-in: a private mount namespace where the repo, ../shared and /work
are empty tmpfs mounts (the interpreter's own venv stays visible: "the image" links into it).

    box = Sandbox.create(Path("/tmp/x/sandbox"))
    subprocess.Popen([*box.wrap, "python", "-c", "..."])   # runs with the repo hidden
    box.mode        # "mount-ns" (root), "userns" (unprivileged user namespaces), or "none" (not available)

`unshare --mount --propagation private` gives the process its own mount table, so the tmpfs mounts are
invisible to every other process on the machine and vanish with it. Where neither root nor user
namespaces are available the wrap is empty and mode is "none": steps then still run with no repo on
their path, an empty HOME/cwd and a clean env, but could read the repo by absolute path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _under(p: Path, roots: list[Path]) -> bool:
    return any(p == r or r in p.parents for r in roots)


@dataclass(frozen=True)
class Sandbox:
    root: Path
    wrap: list[str]
    mode: str
    hidden: tuple[str, ...]

    @classmethod
    def create(cls, root: Path, hide: list[Path] | None = None, keep: list[Path] | None = None) -> Sandbox:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        hide = [p.resolve() for p in (hide or [REPO, REPO.parent / "shared", Path("/work")]) if p.exists()]
        keep = [p.resolve() for p in (keep or [Path(sys.prefix), Path(sys.base_prefix)]) if p.exists()]
        keep = [k for k in keep if _under(k, hide)]
        if _under(root, hide):
            raise ValueError(f"sandbox root {root} is inside a hidden path")
        lines = ["set -e"]
        for i, k in enumerate(keep):
            (root / "hold" / str(i)).mkdir(parents=True, exist_ok=True)
            lines.append(f"mount --bind {shlex.quote(str(k))} {shlex.quote(str(root / 'hold' / str(i)))}")
        for h in sorted(hide, key=lambda p: len(p.parts)):
            if not _under(h, [x for x in hide if x != h]):
                lines.append(f"mount -t tmpfs -o size=1m,mode=0755 tmpfs {shlex.quote(str(h))}")
        for i, k in enumerate(keep):
            lines += [f"mkdir -p {shlex.quote(str(k))}",
                      f"mount --bind {shlex.quote(str(root / 'hold' / str(i)))} {shlex.quote(str(k))}"]
        lines.append('exec "$@"')
        script = root / "enter.sh"
        script.write_text("\n".join(lines) + "\n")
        # what must vanish: every entry of a hidden dir except the way down to a kept path
        gone = [c for h in hide for c in sorted(h.iterdir())[:50] if not any(c == k or c in k.parents for k in keep)]
        check = "for f in " + " ".join(shlex.quote(str(c)) for c in gone) + '; do [ -e "$f" ] && exit 3; done; exit 0'
        unshare = shutil.which("unshare")
        for mode, prefix in (("mount-ns", ["--mount", "--propagation", "private"]),
                             ("userns", ["--user", "--map-root-user", "--mount", "--propagation", "private"])):
            if unshare is None:
                break
            wrap = [unshare, *prefix, "/bin/sh", str(script)]
            probe = subprocess.run([*wrap, "/bin/sh", "-c", check], capture_output=True, text=True, timeout=30,
                                   env={"PATH": os.environ.get("PATH", "")})
            if probe.returncode == 0:
                return cls(root, wrap, mode, tuple(map(str, hide)))
        return cls(root, [], "none", ())
