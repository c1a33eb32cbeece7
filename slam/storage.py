"""Storage by URI: local paths and `s3://bucket/key` (boto3; honours AWS_ENDPOINT_URL for MinIO,
SeaweedFS or moto).

    from slam import storage
    storage.write_json("s3://bucket/run/probe.json", report)      # atomic: readers never see half a file
    storage.publish_dir("/tmp/delta", "s3://bucket/run/delta")     # files first, _SUCCESS marker last
    with storage.local_copy("s3://bucket/run/delta") as path: ...  # downloads to a temp dir

Directories are "published": on a local disk by writing next to the target and renaming; on S3 by
uploading every object and then a `_SUCCESS` marker, which readers of directories require.
Credentials come from the environment / instance profile and are never logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slam.errors import SlamError

SUCCESS = "_SUCCESS"


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


_client = None


def s3_client():
    """One boto3 client per process; endpoint from AWS_ENDPOINT_URL(_S3) or MLFLOW_S3_ENDPOINT_URL."""
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                    or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)
        # bounded: 5 attempts with botocore's exponential backoff; 10 s to connect, 60 s per read
        _client = boto3.client("s3", endpoint_url=endpoint,
                               config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10,
                                             read_timeout=60))
    return _client


def reset_client() -> None:
    """Forget the cached client (tests that change AWS_ENDPOINT_URL)."""
    global _client
    _client = None


def _s3_error(e: Exception, uri: str) -> SlamError:
    code = getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)
    return SlamError(f"S3 {code} for {uri}")


def exists(uri: str | os.PathLike) -> bool:
    uri = str(uri)
    if not is_s3(uri):
        return Path(uri).exists()
    bucket, key = split_s3(uri)
    c = s3_client()
    try:
        c.head_object(Bucket=bucket, Key=key)
        return True
    except Exception:
        resp = c.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        return resp.get("KeyCount", 0) > 0


def read_bytes(uri: str | os.PathLike) -> bytes:
    uri = str(uri)
    if not is_s3(uri):
        p = Path(uri)
        if not p.is_file():
            raise SlamError(f"file not found: {uri}")
        return p.read_bytes()
    bucket, key = split_s3(uri)
    try:
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:
        raise _s3_error(e, uri) from None


def read_text(uri: str | os.PathLike) -> str:
    return read_bytes(uri).decode("utf-8")


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


def write_bytes(uri: str | os.PathLike, data: bytes) -> str:
    """Write atomically: a local temp file renamed into place; an S3 PUT is atomic already."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as e:
            raise _s3_error(e, uri) from None
        return uri
    p = Path(uri)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, p)
    return uri


def write_text(uri: str | os.PathLike, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str | os.PathLike, obj: Any) -> str:
    return write_text(uri, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def upload_file(local: str | os.PathLike, uri: str) -> str:
    if not is_s3(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(uri).with_name(f".{Path(uri).name}.tmp-{uuid.uuid4().hex[:8]}")
        shutil.copyfile(local, tmp)
        os.replace(tmp, uri)
        return uri
    bucket, key = split_s3(uri)
    try:
        s3_client().upload_file(str(local), bucket, key)
    except Exception as e:
        raise _s3_error(e, uri) from None
    return uri


def publish_dir(local_dir: str | os.PathLike, uri: str | os.PathLike) -> str:
    """Make `local_dir`'s content visible at `uri` all at once (see module docstring)."""
    uri, src = str(uri), Path(local_dir)
    if is_s3(uri):
        files = [f for f in sorted(src.rglob("*")) if f.is_file() and f.name != SUCCESS]
        for f in files:
            upload_file(f, join(uri, f.relative_to(src).as_posix()))
        write_text(join(uri, SUCCESS), json.dumps({"files": len(files)}))
        return uri
    dst = Path(uri)
    if src.resolve() == dst.resolve():
        (dst / SUCCESS).write_text("{}")
        return uri
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    shutil.copytree(src, staging)
    (staging / SUCCESS).write_text(json.dumps({"files": sum(1 for f in staging.rglob("*") if f.is_file())}))
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
        os.replace(staging, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, dst)
    return uri


def list_objects(uri: str) -> list[tuple[str, str]]:
    """(key relative to the prefix, ETag) of every object under an s3:// prefix."""
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/"
    out: list[tuple[str, str]] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend((o["Key"][len(prefix):], str(o.get("ETag", ""))) for o in page.get("Contents", []))
    except Exception as e:
        raise _s3_error(e, uri) from None
    return out


def download_dir(uri: str, local_dir: str | os.PathLike, require_success: bool = True) -> Path:
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/"
    c = s3_client()
    keys = [prefix + k for k, _ in list_objects(uri)]
    if not keys:
        raise SlamError(f"nothing at {uri}")
    if require_success and prefix + SUCCESS not in keys:
        raise SlamError(f"{uri} is incomplete (no {SUCCESS} marker): it is still being written, or a writer died")
    out = Path(local_dir)
    for k in keys:
        dest = out / k[len(prefix):]
        dest.parent.mkdir(parents=True, exist_ok=True)
        c.download_file(bucket, k, str(dest))
    return out


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike, require_success: bool = False) -> Iterator[Path]:
    """Yield a local path for `uri` (a file or a directory); S3 objects are downloaded to a temp dir."""
    uri = str(uri)
    if not is_s3(uri):
        p = Path(uri)
        if not p.exists():
            raise SlamError(f"not found: {uri}")
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="slam-") as tmp:
        bucket, key = split_s3(uri)
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            dest = Path(tmp) / Path(key).name
            s3_client().download_file(bucket, key, str(dest))
            yield dest
        except SlamError:
            raise
        except Exception:
            yield download_dir(uri, Path(tmp) / "dir", require_success=require_success)


def fingerprint_bytes(*chunks: bytes) -> str:
    import hashlib

    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]
