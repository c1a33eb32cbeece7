"""Storage by URI: local paths and `s3://bucket/key` (boto3; honours AWS_ENDPOINT_URL for MinIO,
SeaweedFS or moto).

    from slam import storage
    storage.write_json("s3://bucket/run/probe.json", report)      # atomic: readers never see half a file
    storage.publish_dir("/tmp/delta", "s3://bucket/run/delta")     # all files, then the _SUCCESS manifest
    with storage.local_copy("s3://bucket/run/delta") as path: ...  # a verified copy in a temp dir

Directories are "published". Their `_SUCCESS` marker is written last and is their manifest: the sha256
and size of every file. Readers go by it: only listed files are read, and each one is checked against it
(a mix of two versions is refused, not loaded). Locally a publish stages next to the target, fsyncs, and
swaps the two directories in one rename (renameat2 RENAME_EXCHANGE): a crash leaves the old or the new
output, never none. A target that holds files slam did not write is refused, never emptied. On S3
(slam/publish_s3.py) the new files are staged under the prefix first, so the old version stays readable
until the commit, which readers finish themselves if the writer died half-way. Two writers of one target
get a clear error (a lock file / an S3 lease). Credentials come from the environment or an instance
profile and are never logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slam.errors import SlamError
from slam.s3 import endpoint, not_found, reset_client, s3_call, s3_client, s3_error  # noqa: F401  (re-exported)

SUCCESS = "_SUCCESS"
MARKER_FORMAT = "slam-published/1"
RESERVED = (SUCCESS, "_COMMIT", "_LOCK", "_staging")  # names the publish protocol owns inside a published dir


def is_s3(uri: str | os.PathLike) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    rest = str(uri)[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise SlamError(f"bad S3 URI {uri!r}: expected s3://bucket/key")
    return bucket, key


def absolute(root: str | os.PathLike) -> str:
    """A storage root as every process sees it: s3:// as is, a local path made absolute (kfp.local and Ray
    run steps and workers in their own working directories)."""
    return str(root) if is_s3(root) else str(Path(root).resolve())


def join(uri: str | os.PathLike, *parts: str) -> str:
    base = str(uri)
    if is_s3(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def safe_relative(rel: str, where: str = "") -> str:
    """`rel` when it stays inside its directory: no `..`, no absolute path, no backslash or NUL (an S3 key
    or a manifest entry like `../../home/x` must never write outside the target)."""
    parts = rel.split("/")
    if (not rel or rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts)):
        raise SlamError(f"refusing {rel!r}{' in ' + where if where else ''}: a path that could write outside "
                        f"the target directory")
    return rel


# -------------------------------------------------------------------------------------------- files

def exists(uri: str | os.PathLike) -> bool:
    uri = str(uri)
    if not is_s3(uri):
        return Path(uri).exists()
    if _s3_object_exists(uri):
        return True
    bucket, key = split_s3(uri)
    resp = s3_call(uri, s3_client().list_objects_v2, Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
    return resp.get("KeyCount", 0) > 0


def _s3_object_exists(uri: str) -> bool:
    """HEAD one object: True/False, any other answer (403, network) a one-line SlamError."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if not_found(e, head=True):
            return False
        raise s3_error(e, uri) from None
    except Exception as e:
        raise s3_error(e, uri) from None


def read_bytes(uri: str | os.PathLike) -> bytes:
    uri = str(uri)
    if not is_s3(uri):
        p = Path(uri)
        if not p.is_file():
            raise SlamError(f"{'is a directory, not a file' if p.is_dir() else 'file not found'}: {uri}")
        try:
            return p.read_bytes()
        except OSError as e:
            raise SlamError(f"cannot read {uri}: {e.strerror or e}") from None
    bucket, key = split_s3(uri)
    return s3_call(uri, lambda: s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())


def read_text(uri: str | os.PathLike) -> str:
    try:
        return read_bytes(uri).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SlamError(f"{uri}: not UTF-8 text (byte {e.start})") from None


def read_jsonl(uri: str | os.PathLike) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, one per line. Lines are split on "\\n" only: str.splitlines()
    also splits on U+2028/U+2029 and other separators that occur inside real questions."""
    rows = []
    for i, line in enumerate(read_text(uri).split("\n"), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SlamError(f"{uri} line {i}: not valid JSON ({e.msg})") from None
    return rows


def read_json(uri: str | os.PathLike) -> Any:
    try:
        return json.loads(read_text(uri))
    except json.JSONDecodeError as e:
        raise SlamError(f"{uri}: not valid JSON ({e.msg} at line {e.lineno})") from None


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a directory's entry to disk (a rename is durable only once its dir is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _write_local(p: Path, fill) -> None:
    """A temp file next to `p`, filled by fill(fileobj), fsynced, renamed over `p`, parent synced."""
    if p.is_dir():
        raise SlamError(f"{p} is a directory: give a file path")
    tmp = p.with_name(f".{p.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        fsync_path(p.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SlamError(f"cannot write {p}: {e.strerror or e}") from None


def write_bytes(uri: str | os.PathLike, data: bytes) -> str:
    """Write atomically: a local temp file renamed into place; an S3 PUT is atomic already."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_call(uri, s3_client().put_object, Bucket=bucket, Key=key, Body=data)
        return uri
    _write_local(Path(uri), lambda f: f.write(data))
    return uri


def write_text(uri: str | os.PathLike, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str | os.PathLike, obj: Any) -> str:
    return write_text(uri, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def upload_file(local: str | os.PathLike, uri: str) -> str:
    if not is_s3(uri):
        def fill(f):
            with open(local, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        _write_local(Path(uri), fill)
        return uri
    bucket, key = split_s3(uri)
    s3_call(uri, s3_client().upload_file, str(local), bucket, key)
    return uri


def list_objects(uri: str) -> list[tuple[str, str]]:
    """(key relative to the prefix, ETag) of every object under an s3:// prefix."""
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/"
    out: list[tuple[str, str]] = []

    def walk() -> None:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend((o["Key"][len(prefix):], str(o.get("ETag", ""))) for o in page.get("Contents", []))

    s3_call(uri, walk)
    return out


def remove_dir(uri: str | os.PathLike) -> None:
    """Delete an output slam published (a superseded checkpoint): locally only a directory carrying slam's
    `_SUCCESS` manifest (anything else could be a user's files and is refused), on S3 every object under
    the prefix. A missing one is not an error (a retry may find it gone)."""
    uri = str(uri)
    if not is_s3(uri):
        from slam import publish_local

        publish_local.remove(Path(uri))
        return
    bucket, prefix = split_s3(uri)
    keys = [prefix.rstrip("/") + "/" + rel for rel, _ in list_objects(uri)]
    for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
        batch = {"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True}
        s3_call(uri, s3_client().delete_objects, Bucket=bucket, Delete=batch)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------- published directories

def file_manifest(local_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """{relative path: {"sha256", "size"}} of every file under `local_dir` (the protocol's own names excluded)."""
    d = Path(local_dir)
    out = {}
    for f in sorted(d.rglob("*")):
        rel = f.relative_to(d).as_posix()
        if f.is_file() and rel.split("/")[0] not in RESERVED:
            out[rel] = {"sha256": sha256_file(f), "size": f.stat().st_size}
    return out


def marker_for(files: dict[str, dict[str, Any]], publish_id: str = "") -> dict[str, Any]:
    return {"format": MARKER_FORMAT, "id": publish_id or uuid.uuid4().hex, "files": files}


def parse_marker(text: str | bytes, uri: str) -> dict[str, Any]:
    """The marker's manifest; {"files": None} for markers of older slam versions (no file list)."""
    try:
        m = json.loads(text or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SlamError(f"{uri}: the {SUCCESS} marker is not valid JSON: re-publish this output") from None
    if not isinstance(m, dict) or (m.get("format") == MARKER_FORMAT and not isinstance(m.get("files"), dict)):
        raise SlamError(f"{uri}: malformed {SUCCESS} marker: re-publish this output")
    if m.get("format") != MARKER_FORMAT:
        return {"files": None}
    for rel, meta in m["files"].items():
        safe_relative(rel, f"{uri}/{SUCCESS}")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise SlamError(f"{uri}: malformed {SUCCESS} entry for {rel!r}: re-publish this output")
    return m


def read_marker(uri: str | os.PathLike) -> dict[str, Any] | None:
    """The published manifest of a directory, or None when it is not (yet) published. On S3 a commit that
    a dead writer left half-done is finished first (see slam/publish_s3.py)."""
    uri = str(uri)
    if is_s3(uri):
        from slam import publish_s3

        return publish_s3.read_marker(uri)
    p = Path(uri) / SUCCESS
    if not p.is_file():
        return None
    return parse_marker(p.read_bytes(), uri)


def is_published(uri: str | os.PathLike) -> bool:
    """A complete published directory (its marker is there): what "this step's output exists" means."""
    return read_marker(uri) is not None


def content_digest(uri: str | os.PathLike) -> str:
    """Identity of what is at `uri` by content, not by name: the published manifest's hash, else the
    files' hashes (local) or ETags (S3). Step keys use it, so data rebuilt at the same URI is new input."""
    uri = str(uri)
    if _is_file(uri):
        if is_s3(uri):
            bucket, key = split_s3(uri)
            files = {"": s3_call(uri, s3_client().head_object, Bucket=bucket, Key=key).get("ETag", "")}
        else:
            files = {"": sha256_file(uri)}
    elif (marker := read_marker(uri)) is not None and marker.get("files") is not None:
        files = {k: v["sha256"] for k, v in marker["files"].items()}
    elif is_s3(uri):
        files = dict(list_objects(uri))
    elif Path(uri).is_dir():
        files = {k: v["sha256"] for k, v in file_manifest(uri).items()}
    else:
        files = {}
    if not files:
        raise SlamError(f"not found: {uri}")
    return fingerprint_bytes(json.dumps(files, sort_keys=True).encode())


def _is_file(uri: str) -> bool:
    return _s3_object_exists(uri) if is_s3(uri) else Path(uri).is_file()


def verify_dir(local: str | os.PathLike, marker: dict[str, Any], uri: str) -> None:
    """Every listed file is there with the listed sha256 (else the output changed under us, or is a mix)."""
    d = Path(local)
    for rel, meta in (marker.get("files") or {}).items():
        f = d / rel
        if not f.is_file():
            raise SlamError(f"{uri}: {rel} is listed in its {SUCCESS} manifest but missing: re-publish this output")
        if sha256_file(f) != meta["sha256"]:
            raise SlamError(f"{uri}: {rel} does not match its {SUCCESS} manifest (changed after publishing, or "
                            f"a mix of two versions): re-publish this output")


def publish_dir(local_dir: str | os.PathLike, uri: str | os.PathLike) -> str:
    """Make `local_dir`'s content visible at `uri` all at once, with its manifest (see module docstring)."""
    uri, src = str(uri), Path(local_dir)
    if is_s3(uri):
        from slam import publish_s3

        return publish_s3.publish(src, uri)
    from slam import publish_local

    return publish_local.publish(src, Path(uri))


def check_output(uri: str | os.PathLike) -> None:
    """Refuse now (before hours of work) an output that publish_dir would refuse at the end: a local
    directory holding files slam did not write."""
    if not is_s3(uri):
        from slam import publish_local

        publish_local.check_target(Path(uri))


def download_dir(uri: str, local_dir: str | os.PathLike, require_success: bool = True) -> Path:
    """Copy an S3 prefix to `local_dir`: a published one by its manifest (listed files only, each verified,
    one retry when a publish replaced it meanwhile), an unpublished one (require_success=False) as is."""
    out = Path(local_dir)
    for attempt in range(2):
        marker = read_marker(uri)
        if marker is None and require_success:
            if not list_objects(uri):
                raise SlamError(f"nothing at {uri}")
            raise SlamError(f"{uri} is incomplete (no {SUCCESS} marker): it is still being written, or a "
                            "writer died before finishing")
        if marker is None or marker.get("files") is None:
            rels = [k for k, _ in list_objects(uri) if k and not k.endswith("/") and k.split("/")[0] not in RESERVED]
            if not rels and marker is None:
                raise SlamError(f"nothing at {uri}")
        else:
            rels = list(marker["files"])
        bucket, prefix = split_s3(uri)
        for rel in rels:
            dest = out / safe_relative(rel, uri)
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3_call(uri, s3_client().download_file, bucket, prefix.rstrip("/") + "/" + rel, str(dest))
        if marker is None or marker.get("files") is None:
            return out
        try:
            verify_dir(out, marker, uri)
            (out / SUCCESS).write_text(json.dumps(marker))  # the copy is a published dir of its own
            return out
        except SlamError:
            if attempt:
                raise
            shutil.rmtree(out, ignore_errors=True)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike, require_success: bool = False) -> Iterator[Path]:
    """A local path for `uri` (a file or a directory): S3 objects are downloaded to a temp dir. A published
    directory is verified against its manifest; require_success refuses an unpublished one."""
    uri = str(uri)
    if not is_s3(uri):
        p = Path(uri)
        if not p.exists():
            from slam import publish_local

            publish_local.recover(p)
            if not p.exists():
                raise SlamError(f"not found: {uri}")
        if p.is_dir():
            marker = read_marker(p)
            if marker is None and require_success:
                raise SlamError(f"{uri} is incomplete (no {SUCCESS} marker): not a finished slam output")
            if marker is not None:
                verify_dir(p, marker, uri)
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="slam-") as tmp:
        bucket, key = split_s3(uri)
        if key and _is_file(uri):
            dest = Path(tmp) / Path(key).name
            s3_call(uri, s3_client().download_file, bucket, key, str(dest))
            yield dest
        else:
            yield download_dir(uri, Path(tmp) / "dir", require_success=require_success)
