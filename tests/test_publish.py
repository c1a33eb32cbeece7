"""Published directories under faults: a reader gets the old or the new version, never a mix or nothing;
a user's files are never deleted; two writers get a clear error.

    .venv/bin/python -m pytest -q tests/test_publish.py

Fault tests: the S3 server stopped mid-publish (staging and commit phases) and restarted; a writer process
SIGKILLed mid-write, many times; a crash between the two renames of the fallback path; a foreign file in
`--out`. The S3 server is moto on 127.0.0.1 (its objects survive a restart within the test process, as
a real server's do on disk).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slam import publish_local, publish_s3, storage
from slam.errors import SlamError


def make_version(root: Path, tag: str, n: int = 6, size: int = 20_000) -> Path:
    """A directory whose every file says which version it belongs to (so a mix is visible)."""
    d = root / f"src-{tag}"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / ("sub" if i % 2 else "") / f"f{i}.bin").write_bytes((tag.encode() * size)[:size])
    (d / f"only-in-{tag}.txt").write_text(tag)
    return d


def version_of(d: Path) -> str:
    """The one version every file of a verified copy belongs to (a mix fails the assertion)."""
    tags = {p.read_bytes()[:2].decode() for p in d.rglob("*.bin")}
    assert len(tags) == 1, f"a mix of versions: {tags}"
    tag = tags.pop()
    assert sorted(p.name for p in d.glob("only-in-*")) == [f"only-in-{tag}.txt"], "stale or missing files"
    return tag


# --------------------------------------------------------------------------------------------------- local

def test_republish_replaces_everything_and_lists_it(tmp_path):
    out = tmp_path / "out"
    storage.publish_dir(make_version(tmp_path, "v1"), out)
    storage.publish_dir(make_version(tmp_path, "v2"), out)
    with storage.local_copy(out, require_success=True) as d:
        assert version_of(d) == "v2"
    marker = storage.read_marker(out)
    assert set(marker["files"]) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"_SUCCESS"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "no staging/lock leftovers"


def test_out_with_a_foreign_file_is_refused_and_the_file_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(SlamError, match="not empty and was not written by slam .*thesis.tex"):
        storage.publish_dir(make_version(tmp_path, "v1"), out)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"] and (out / "thesis.tex").read_text() == "years of work"


def test_a_foreign_file_added_to_our_output_is_never_deleted(tmp_path):
    out = tmp_path / "out"
    storage.publish_dir(make_version(tmp_path, "v1"), out)
    (out / "sub" / "notes.md").write_text("mine")
    with pytest.raises(SlamError, match="holds files slam did not write .*sub/notes.md"):
        storage.publish_dir(make_version(tmp_path, "v2"), out)
    assert (out / "sub" / "notes.md").read_text() == "mine"
    with storage.local_copy(out, require_success=True) as d:
        assert version_of(d) == "v1"


def test_an_empty_existing_out_dir_is_fine(tmp_path):
    (tmp_path / "out").mkdir()
    storage.publish_dir(make_version(tmp_path, "v1"), tmp_path / "out")
    assert storage.is_published(tmp_path / "out")


def test_cli_out_into_a_dir_with_a_foreign_file(tmp_path, capsys):
    """`slam data synth --out DIR` where DIR holds a user's file: refused before any work, file intact."""
    from slam.cli import main

    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.csv").write_text("a,b\n")
    assert main(["data", "synth", "--out", str(out), "--n-train", "5", "--langs", "en,de"]) == 2
    assert "not empty and was not written by slam" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.csv"]
    assert main(["data", "synth", "--out", str(tmp_path / "w2"), "--n-train", "5", "--n-val", "2", "--n-test", "2",
                 "--n-probe", "2", "--langs", "en,de"]) == 0  # a fresh dir works, and re-running over it too
    assert main(["data", "synth", "--out", str(tmp_path / "w2"), "--n-train", "6", "--n-val", "2", "--n-test", "2",
                 "--n-probe", "2", "--langs", "en,de"]) == 0


def test_a_crash_between_the_two_renames_leaves_the_old_output(tmp_path, monkeypatch):
    """Filesystems without RENAME_EXCHANGE get two renames; a crash between them is undone by the next
    reader or writer (the old output comes back)."""
    out = tmp_path / "out"
    storage.publish_dir(make_version(tmp_path, "v1"), out)
    monkeypatch.setattr(publish_local.ctypes, "CDLL", lambda *a, **k: object())  # no renameat2 here
    real_rename, calls = os.rename, []

    def crash_on_second(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # old moved aside, new not yet in place
            raise KeyboardInterrupt("power cut")
        return real_rename(a, b)

    monkeypatch.setattr(publish_local.os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        storage.publish_dir(make_version(tmp_path, "v2"), out)
    monkeypatch.undo()
    with storage.local_copy(out, require_success=True) as d:  # the reader puts the old output back
        assert version_of(d) == "v1"
    storage.publish_dir(make_version(tmp_path, "v2"), out)  # and the next publish goes through
    with storage.local_copy(out, require_success=True) as d:
        assert version_of(d) == "v2"


def test_two_writers_racing_get_a_clear_error(tmp_path):
    out = tmp_path / "out"
    with publish_local._lock(out):  # another writer holds the target
        with pytest.raises(SlamError, match="is being written by pid .* two writers raced"):
            storage.publish_dir(make_version(tmp_path, "v1"), out)
    storage.publish_dir(make_version(tmp_path, "v1"), out)  # free again once it is done


def test_files_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    storage.write_text(tmp_path / "a.json", "{}")
    assert any(".a.json.tmp-" in s for s in synced) and str(tmp_path) in synced  # the temp file, then its dir
    synced.clear()
    storage.publish_dir(make_version(tmp_path, "v1", n=2), tmp_path / "out")
    assert sum(".slam-new-" in s and s.endswith(".bin") for s in synced) == 2


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from slam import storage
    out, a, b = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    print("ready", flush=True)
    i = 0
    while True:
        storage.publish_dir(a if i % 2 else b, out)
        i += 1
""")


def test_sigkill_mid_write_never_leaves_a_mix_or_nothing(tmp_path):
    """A writer re-publishing two versions as fast as it can, SIGKILLed at random moments: every time the
    output is one complete version, and the next writer is not blocked by what the dead one left."""
    v1, v2 = make_version(tmp_path, "v1", n=20), make_version(tmp_path, "v2", n=20)
    out = tmp_path / "out"
    storage.publish_dir(v1, out)
    rng = random.Random(0)
    seen = set()
    for _ in range(12):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(v1), str(v2)], stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        with storage.local_copy(out, require_success=True) as d:
            seen.add(version_of(d))
    storage.publish_dir(v2, out)  # no stale lock or staging dir stands in the way
    with storage.local_copy(out, require_success=True) as d:
        assert version_of(d) == "v2"
    assert not list(tmp_path.glob(".out.slam-new-*"))


# ------------------------------------------------------------------------------------------------------- S3

def test_s3_republish_removes_stale_files_and_lists_the_new_ones(s3_bucket, tmp_path):
    uri = f"{s3_bucket}/run/delta"
    storage.publish_dir(make_version(tmp_path, "v1"), uri)
    storage.publish_dir(make_version(tmp_path, "v2"), uri)
    keys = {k for k, _ in storage.list_objects(uri)}
    assert "only-in-v1.txt" not in keys and not [k for k in keys if k.startswith(("_staging", "_COMMIT", "_LOCK"))]
    with storage.local_copy(uri, require_success=True) as d:
        assert version_of(d) == "v2"


def test_s3_foreign_objects_under_the_prefix_are_left_alone(s3_bucket, tmp_path):
    uri = f"{s3_bucket}/out"
    storage.write_text(f"{uri}/README.txt", "someone else's")
    storage.publish_dir(make_version(tmp_path, "v1"), uri)
    storage.publish_dir(make_version(tmp_path, "v2"), uri)
    assert storage.read_text(f"{uri}/README.txt") == "someone else's"
    with storage.local_copy(uri, require_success=True) as d:
        assert version_of(d) == "v2" and not (d / "README.txt").exists()  # not in the manifest: not read


def test_a_reader_refuses_a_new_file_under_an_old_manifest(s3_bucket, tmp_path):
    """What the audit saw: a new delta.safetensors next to the old manifest. The reader checks every file
    against the _SUCCESS manifest and refuses the mix."""
    uri = f"{s3_bucket}/delta"
    storage.publish_dir(make_version(tmp_path, "v1"), uri)
    storage.write_bytes(f"{uri}/f0.bin", b"v2" * 10_000)  # a writer that overwrote files in place
    with pytest.raises(SlamError, match="f0.bin does not match its _SUCCESS manifest"):
        with storage.local_copy(uri, require_success=True):
            pass


def test_objects_without_a_marker_are_not_an_output(s3_bucket):
    storage.write_text(f"{s3_bucket}/half/part-0", "x")  # a writer died before publishing
    assert storage.exists(f"{s3_bucket}/half") and not storage.is_published(f"{s3_bucket}/half")


def test_s3_two_writers_racing_get_a_clear_error(s3_bucket, tmp_path):
    uri = f"{s3_bucket}/out"
    etag = publish_s3._acquire(uri, "other-writer")
    assert etag
    with pytest.raises(SlamError, match="being published by another writer .* two writers raced"):
        storage.publish_dir(make_version(tmp_path, "v1"), uri)
    assert not storage.is_published(uri)


def test_s3_a_lease_left_by_a_dead_process_on_this_host_is_taken_over(s3_bucket, tmp_path):
    """A Ray worker killed mid-publish and retried on the same node: its lease is not waited out (the live
    writer of the test above still is)."""
    uri = f"{s3_bucket}/out-dead"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    bucket, key = publish_s3._key(uri, publish_s3.LOCK)
    storage.s3_client().put_object(Bucket=bucket, Key=key, Body=json.dumps(
        {"owner": f"pid {int(gone.stdout)} on {socket.gethostname()}", "id": "x", "expires": time.time() + 100}).encode())
    storage.publish_dir(make_version(tmp_path, "v1"), uri)
    assert storage.is_published(uri)


@pytest.fixture()
def restartable_s3(monkeypatch):
    """Our own moto server on a fixed port that a test can stop and start again; one attempt per S3 call."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(publish_s3, "LEASE_S", 1.0)  # a dead writer's lease expires fast
    storage.reset_client()
    state = {"server": None}

    def start():
        state["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        state["server"].start()

    def stop():
        state["server"].stop()

    start()
    storage.s3_client().create_bucket(Bucket="faults")
    yield start, stop
    stop()
    storage.reset_client()


@pytest.mark.parametrize("phase,at", [("staging", 1), ("staging", 5), ("commit", 1), ("commit", 4), ("commit", 7)])
def test_s3_server_killed_mid_publish(phase, at, restartable_s3, tmp_path, monkeypatch):
    """Stop the S3 server at the `at`-th upload (staging) or server-side copy (commit) of a re-publish, start it
    again: the writer failed with one line, and the next reader gets one whole version (the old one when the
    commit had not begun, the new one — the reader finishes the commit — when it had), never a mix."""
    start, stop = restartable_s3
    uri = "s3://faults/run/delta"
    storage.publish_dir(make_version(tmp_path, "v1"), uri)
    count = {"n": 0}
    real_upload, real_call = storage.upload_file, storage.s3_call

    def tick():
        count["n"] += 1
        if count["n"] == at:
            stop()

    def upload(local, dest):
        if phase == "staging":
            tick()
        return real_upload(local, dest)

    def call(u, fn, *a, **kw):
        if phase == "commit" and getattr(fn, "__name__", "") == "copy":
            tick()
        return real_call(u, fn, *a, **kw)

    monkeypatch.setattr(storage, "upload_file", upload)
    monkeypatch.setattr(storage, "s3_call", call)
    with pytest.raises(SlamError) as e:
        storage.publish_dir(make_version(tmp_path, "v2"), uri)
    assert "\n" not in str(e.value) and "unreachable" in str(e.value)
    monkeypatch.setattr(storage, "upload_file", real_upload)
    monkeypatch.setattr(storage, "s3_call", real_call)
    start()
    with storage.local_copy(uri, require_success=True) as d:
        assert version_of(d) == ("v1" if phase == "staging" else "v2")
    time.sleep(1.2)  # the dead publish's lease runs out
    storage.publish_dir(make_version(tmp_path, "v3"), uri)
    with storage.local_copy(uri, require_success=True) as d:
        assert version_of(d) == "v3"
    assert not [k for k, _ in storage.list_objects(uri) if k.startswith(("_staging", "_COMMIT", "_LOCK"))]


def test_s3_markers_of_older_slam_versions_still_read(s3_bucket, tmp_path):
    uri = f"{s3_bucket}/old"
    storage.write_text(f"{uri}/a.txt", "x")
    storage.write_text(f"{uri}/_SUCCESS", json.dumps({"files": 1}))
    with storage.local_copy(uri, require_success=True) as d:
        assert (d / "a.txt").read_text() == "x"


def test_content_digest_follows_content_not_the_uri(tmp_path, s3_bucket):
    a, b = tmp_path / "a", f"{s3_bucket}/b"
    storage.publish_dir(make_version(tmp_path, "v1"), a)
    storage.publish_dir(make_version(tmp_path, "v1"), b)
    assert storage.content_digest(a) == storage.content_digest(b)
    before = storage.content_digest(a)
    storage.publish_dir(make_version(tmp_path, "v2"), a)  # rebuilt at the same URI
    assert storage.content_digest(a) != before


def test_a_step_does_not_reuse_results_of_data_rebuilt_at_the_same_uri(tmp_path):
    """Step keys hash the data's manifest, not its URI: rebuild the dataset in place and the probe runs again."""
    from slam import steps
    from slam.data.build import read_examples
    from slam.data.synth import synth
    from slam.testing import save_tiny

    data = str(tmp_path / "data")
    synth(data, langs=["en", "de"], n_train=8, n_val=2, n_test=2, n_probe=6, seed=0)
    texts = [r["instruction"] + " " + r["response"] for r in read_examples(data, "train")]
    model = str(save_tiny(tmp_path / "model", "llama", num_layers=2, texts=texts))
    kw = dict(storage=str(tmp_path / "runs"), base_model=model, data_uri=data, languages="en,de", top_k=1,
              max_questions=6)
    first = steps.probe_layers(**kw)
    assert steps.probe_layers(**kw)["uri"] == first["uri"]  # same content: reused
    synth(data, langs=["en", "de"], n_train=8, n_val=2, n_test=2, n_probe=6, seed=1)  # rebuilt, same URI
    second = steps.probe_layers(**kw)
    assert second["uri"] != first["uri"]
    assert storage.read_json(second["uri"])["data_fingerprint"] != storage.read_json(first["uri"])["data_fingerprint"]
