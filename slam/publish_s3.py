"""S3 published prefixes (storage.publish_dir's S3 half): staged upload, a commit readers can finish, a lease.

    publish(Path("/tmp/delta"), "s3://bucket/run/delta")
    read_marker("s3://bucket/run/delta")       # the manifest, or None; finishes a dead writer's commit

Under the prefix: the files at their own keys and `_SUCCESS` (the manifest: sha256 + size per file,
written last). While a publish runs: `_LOCK` (the writer's lease), `_staging/<id>/…` (the new files) and
`_COMMIT` (the new manifest, written once every new file is staged).

publish = take the lease -> upload the new files to `_staging/<id>/` (the old version is untouched and
readable) -> write `_COMMIT` -> commit: remove `_SUCCESS`, server-side copy each staged file to its key,
delete the old version's files the new one lacks, write `_SUCCESS`, delete the staging objects and
`_COMMIT` -> release the lease. A writer (or its S3 server) that dies before `_COMMIT` leaves the old
version readable; after it, the next reader or writer finishes the commit, so the new version is what
is read. Readers check every file against the manifest, so a mix is refused, never loaded.

The lease is a `_LOCK` object created with If-None-Match (S3 conditional writes: AWS, MinIO, moto),
renewed every LEASE_S/4 by a background thread and taken over once LEASE_S passed without renewal (a
writer that died). A second live writer gets a clear error. Stores without conditional writes publish
without a lease (logged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from slam import storage
from slam.errors import SlamError

log = logging.getLogger(__name__)

LEASE_S = float(os.environ.get("SLAM_PUBLISH_LEASE_S") or 120)
COMMIT, LOCK, STAGING = "_COMMIT", "_LOCK", "_staging"


def _key(uri: str, *rel: str) -> tuple[str, str]:
    return storage.split_s3(storage.join(uri, *rel))


def _get(uri: str, rel: str) -> tuple[bytes, str] | None:
    """(body, ETag) of `<uri>/<rel>`, None when it does not exist."""
    from botocore.exceptions import ClientError

    bucket, key = _key(uri, rel)
    try:
        r = storage.s3_client().get_object(Bucket=bucket, Key=key)
        return r["Body"].read(), r.get("ETag", "")
    except ClientError as e:
        if getattr(e, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise storage.s3_error(e, storage.join(uri, rel)) from None
    except Exception as e:
        raise storage.s3_error(e, storage.join(uri, rel)) from None


def _delete(uri: str, rel: str) -> None:
    bucket, key = _key(uri, rel)
    storage.s3_call(uri, storage.s3_client().delete_object, Bucket=bucket, Key=key)


def read_marker(uri: str) -> dict[str, Any] | None:
    got = _get(uri, storage.SUCCESS)
    if got is not None:
        return storage.parse_marker(got[0], uri)
    pending = _get(uri, COMMIT)
    if pending is None:
        return None
    commit = _parse_commit(pending[0], uri)
    try:
        _commit(uri, commit, roll_forward=True)
    except SlamError:
        got = _get(uri, storage.SUCCESS)  # the writer itself finished meanwhile (and removed the staging)
        if got is None:
            raise SlamError(f"{uri}: a writer died while committing and its commit cannot be finished here: "
                            "re-run the step that writes it") from None
        return storage.parse_marker(got[0], uri)
    log.info("finished the commit a writer left half-done at %s", uri)
    got = _get(uri, storage.SUCCESS)
    return storage.parse_marker(got[0], uri) if got else None


def _parse_commit(body: bytes, uri: str) -> dict[str, Any]:
    commit = storage.parse_marker(body, uri)
    try:
        raw = json.loads(body)
    except json.JSONDecodeError:
        raise SlamError(f"{uri}: malformed {COMMIT} record: re-publish this output") from None
    staging = raw.get("staging", "")
    if commit.get("files") is None or not isinstance(staging, str) or not staging.startswith(STAGING + "/"):
        raise SlamError(f"{uri}: malformed {COMMIT} record: re-publish this output")
    storage.safe_relative(staging, uri)
    replaces = [storage.safe_relative(r, uri) for r in raw.get("replaces", []) if isinstance(r, str)]
    return {**commit, "staging": staging, "replaces": replaces}


def publish(src: Path, uri: str) -> str:
    files = storage.file_manifest(src)
    publish_id = uuid.uuid4().hex
    with _lease(uri, publish_id) as still_ours:
        old = read_marker(uri)  # also finishes a dead writer's commit, so its files count as the old version
        _remove_staging(uri)  # what writers that died before committing left (we hold the lease)
        staging = f"{STAGING}/{publish_id}"
        for rel in files:
            storage.upload_file(src / rel, storage.join(uri, staging, rel))
        marker = storage.marker_for(files, publish_id)
        commit = {**marker, "staging": staging, "replaces": sorted((old or {}).get("files") or [])}
        still_ours()
        storage.write_json(storage.join(uri, COMMIT), commit)
        _commit(uri, commit, roll_forward=False)
    return uri


def _commit(uri: str, commit: dict[str, Any], roll_forward: bool) -> None:
    """Staged files -> their keys, then the marker. Idempotent: a reader may run it alongside the writer."""
    c = storage.s3_client()
    bucket, _ = storage.split_s3(uri)
    if not roll_forward:  # readers roll forward only when the marker is already gone
        _delete(uri, storage.SUCCESS)
    for rel in commit["files"]:
        _, src_key = _key(uri, commit["staging"], rel)
        _, dst_key = _key(uri, rel)
        storage.s3_call(uri, c.copy, {"Bucket": bucket, "Key": src_key}, bucket, dst_key)
    for rel in commit["replaces"]:
        if rel not in commit["files"]:
            _delete(uri, rel)
    marker = {k: commit[k] for k in ("format", "id", "files")}
    storage.write_json(storage.join(uri, storage.SUCCESS), marker)
    _remove_staging(uri, commit["staging"])
    _delete(uri, COMMIT)


def _remove_staging(uri: str, only: str = "") -> None:
    bucket, _ = storage.split_s3(uri)
    prefix = storage.join(uri, only or STAGING)
    keys = [storage.split_s3(storage.join(prefix, rel))[1] for rel, _ in storage.list_objects(prefix)]
    for i in range(0, len(keys), 1000):
        storage.s3_call(uri, storage.s3_client().delete_objects, Bucket=bucket,
                        Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})


@contextlib.contextmanager
def _lease(uri: str, publish_id: str) -> Iterator[Callable[[], None]]:
    """Hold `<uri>/_LOCK` while publishing; yields a check that raises once the lease was lost."""
    etag = _acquire(uri, publish_id)
    if etag is None:
        yield lambda: None
        return
    state = {"etag": etag, "lost": False}
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 4):
            try:
                state["etag"] = _put_lock(uri, publish_id, if_match=state["etag"])
            except Exception:  # lost to a takeover, or S3 is down: the commit checks before it starts
                state["lost"] = True
                return

    def still_ours() -> None:
        if state["lost"]:
            raise SlamError(f"{uri}: lost the publish lease (another writer took over, or S3 went away): "
                            "nothing was committed")

    t = threading.Thread(target=renew, daemon=True, name="slam-publish-lease")
    t.start()
    try:
        yield still_ours
    finally:
        stop.set()
        t.join(timeout=5)
        with contextlib.suppress(Exception):
            bucket, key = _key(uri, LOCK)
            storage.s3_client().delete_object(Bucket=bucket, Key=key, IfMatch=state["etag"])


def _put_lock(uri: str, publish_id: str, *, if_match: str = "", if_none_match: bool = False) -> str:
    bucket, key = _key(uri, LOCK)
    body = json.dumps({"owner": f"pid {os.getpid()} on {socket.gethostname()}", "id": publish_id,
                       "expires": time.time() + LEASE_S})
    kw: dict[str, Any] = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"} if if_none_match else {}
    return storage.s3_client().put_object(Bucket=bucket, Key=key, Body=body.encode(), **kw)["ETag"]


def _dead_here(owner: str) -> bool:
    """The lease holder ran on this host and its process is gone: a retried attempt of a killed writer (a Ray
    worker restarted on the same node) need not wait out the lease. A wrong guess (a live holder in another pid
    namespace under the same hostname, e.g. host-networked containers) is the case of a holder stalled past its
    lease: its next renewal fails its ETag check and it stops before committing, unless it commits in the
    renewal gap (LEASE_S/4) — the existing lease's limit, not a new one."""
    parts = owner.split()
    if len(parts) != 4 or parts[0] != "pid" or parts[2] != "on" or parts[3] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return False


def _acquire(uri: str, publish_id: str) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    for _ in range(3):
        try:
            return _put_lock(uri, publish_id, if_none_match=True)
        except ClientError as e:
            err = getattr(e, "response", {})
            code, status = err.get("Error", {}).get("Code", ""), err.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NotImplemented",) or status == 501:
                log.warning("%s: the S3 store has no conditional writes; publishing without a lease", uri)
                return None
            if code not in ("PreconditionFailed", "ConditionalRequestConflict") and status not in (409, 412):
                raise storage.s3_error(e, uri) from None
        except BotoCoreError as e:
            raise storage.s3_error(e, uri) from None
        held = _get(uri, LOCK)
        if held is None:
            continue  # released meanwhile
        try:
            info = json.loads(held[0])
            expires, owner = float(info["expires"]), str(info.get("owner", "?"))
        except (ValueError, KeyError, TypeError):
            expires, owner = 0.0, "?"
        if expires > time.time() and not _dead_here(owner):
            raise SlamError(f"{uri} is being published by another writer ({owner}, lease for {expires - time.time():.0f} "
                            f"s more): two writers raced for one output; wait for it, or delete "
                            f"{storage.join(uri, LOCK)} if that writer is gone")
        with contextlib.suppress(Exception):  # a dead writer's lease (expired, or its process gone): take it over
            bucket, key = _key(uri, LOCK)
            storage.s3_client().delete_object(Bucket=bucket, Key=key, IfMatch=held[1])
    raise SlamError(f"{uri}: could not take the publish lease (writers keep racing for it)")
