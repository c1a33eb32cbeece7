"""Local published directories (storage.publish_dir's local half): stage beside the target, fsync, swap.

    publish(Path("/tmp/ds"), Path("runs/w"))    # runs/w = /tmp/ds's files + _SUCCESS manifest, all at once
    recover(Path("runs/w"))                     # put back an old output a crash left beside its target

The new content is copied to `.<name>.slam-new-*` next to the target, every file and directory fsynced,
then the two directories are swapped by one renameat2(RENAME_EXCHANGE): there is no moment without an
output, and a crash leaves the old or the new one. Where the filesystem cannot exchange, two renames are
used and `recover` restores the old output from `.<name>.slam-old-*` after a crash between them.
A target that is not empty and was not written by slam, or that holds files its manifest does not list,
is refused with nothing changed: slam never deletes a user's files. `.<name>.slam-lock` (flock, released
by the kernel when a writer dies) makes a second concurrent writer fail with a clear error.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from slam import storage
from slam.errors import SlamError

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def publish(src: Path, dst: Path) -> str:
    files = storage.file_manifest(src)
    if src.resolve() == dst.resolve():  # written in place (the files are there): add the manifest
        storage.write_json(dst / storage.SUCCESS, storage.marker_for(files))
        return str(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SlamError(f"cannot create {dst.parent}: {e.strerror or e}") from None
    with _lock(dst):
        _recover_locked(dst)
        check_target(dst)
        _remove_leftovers(dst)
        staging = dst.with_name(f".{dst.name}.slam-new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            _stage(src, staging, files)
            if dst.exists():
                _exchange(staging, dst)  # staging now holds the old output: slam's files only (checked)
            else:
                os.rename(staging, dst)
            storage.fsync_path(dst.parent)
        except OSError as e:
            raise SlamError(f"cannot publish {dst}: {e.strerror or e}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return str(dst)


def _stage(src: Path, staging: Path, files: dict) -> None:
    staging.mkdir()
    for rel in files:
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)
        storage.fsync_path(target)
    storage.write_json(staging / storage.SUCCESS, storage.marker_for(files))
    for d in sorted((p for p in staging.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        storage.fsync_path(d)
    storage.fsync_path(staging)


def check_target(dst: Path) -> None:
    """Refuse (changing nothing) a target that holds anything slam did not write."""
    if not dst.exists() and not dst.is_symlink():
        return
    if not dst.is_dir() or dst.is_symlink():
        raise SlamError(f"{dst} exists and is not a directory: choose another output path")
    entries = sorted(p.name for p in dst.iterdir())
    if not entries:
        return
    marker = storage.read_marker(dst)
    if marker is None:
        raise SlamError(f"{dst} is not empty and was not written by slam ({_sample(entries)}): choose a new or "
                        "empty output directory (nothing was changed)")
    if marker.get("files") is None:  # an output of an older slam version: every file is its own
        return
    listed = set(marker["files"]) | {storage.SUCCESS}
    foreign = sorted(f.relative_to(dst).as_posix() for f in dst.rglob("*")
                     if (f.is_file() or f.is_symlink()) and f.relative_to(dst).as_posix() not in listed)
    if foreign:
        raise SlamError(f"{dst} holds files slam did not write ({_sample(foreign)}): move them out or choose "
                        "another output directory (nothing was changed)")


def _sample(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories atomically; the two-rename fallback is recoverable by `recover`."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):
            raise OSError(err, os.strerror(err), str(b))
    old = b.with_name(f".{b.name}.slam-old-{uuid.uuid4().hex[:8]}")
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)


def recover(dst: Path) -> None:
    """Put back the old output when a crash of the two-rename fallback left `dst` missing (no-op if a
    writer holds the target right now)."""
    if dst.exists() or not any(dst.parent.glob(f".{dst.name}.slam-old-*")):
        return
    with contextlib.suppress(SlamError), _lock(dst):
        _recover_locked(dst)


def remove(dst: Path) -> None:
    """Delete a published output (a superseded checkpoint) and what dead writers left beside it, under the
    writers' lock. Only a directory carrying slam's manifest: anything else may be a user's files. It is
    renamed away first, so a crash mid-delete leaves a hidden `.<name>.slam-trash-*` (cleared by the next
    remove in that dir), never a half-deleted output under its own name."""
    for t in dst.parent.glob(".*.slam-trash-*"):
        shutil.rmtree(t, ignore_errors=True)
    if not dst.exists():
        return
    with _lock(dst):
        _recover_locked(dst)
        if storage.read_marker(dst) is None:
            raise SlamError(f"{dst}: not a finished slam output (no {storage.SUCCESS} marker); not deleting it")
        trash = dst.with_name(f".{dst.name}.slam-trash-{uuid.uuid4().hex[:8]}")
        os.rename(dst, trash)
        storage.fsync_path(dst.parent)
        shutil.rmtree(trash)
        _remove_leftovers(dst)


def _recover_locked(dst: Path) -> None:
    old = sorted(dst.parent.glob(f".{dst.name}.slam-old-*"), key=lambda p: p.stat().st_mtime)
    if old and not dst.exists():
        os.rename(old[-1], dst)
        storage.fsync_path(dst.parent)


def _remove_leftovers(dst: Path) -> None:
    """Staging dirs of writers that died (we hold the lock, so none of them is live)."""
    for p in dst.parent.glob(f".{dst.name}.slam-new-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in dst.parent.glob(f".{dst.name}.slam-old-*"):  # only once dst itself is back (see recover)
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _lock(dst: Path) -> Iterator[None]:
    path = dst.with_name(f".{dst.name}.slam-lock")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SlamError(f"cannot write next to {dst}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise SlamError(f"{dst} is being written by {holder} right now: two writers raced for one output; "
                            "wait for it to finish or choose another output") from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino  # not unlinked by a finishing writer
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
