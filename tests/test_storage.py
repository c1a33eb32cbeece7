import pytest

from slam import storage
from slam.errors import SlamError


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_roundtrip_and_publish(kind, tmp_path, request):
    root = str(tmp_path / "out") if kind == "local" else request.getfixturevalue("s3_bucket") + "/out"
    storage.write_json(storage.join(root, "a.json"), {"x": 1})
    assert storage.read_json(storage.join(root, "a.json")) == {"x": 1}
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "w.bin").write_bytes(b"abc")
    storage.publish_dir(src, storage.join(root, "d"))
    assert storage.exists(storage.join(root, "d"))
    with storage.local_copy(storage.join(root, "d"), require_success=True) as p:
        assert (p / "sub" / "w.bin").read_bytes() == b"abc"
        assert (p / storage.SUCCESS).exists()


def test_local_write_is_atomic_and_leaves_no_temp(tmp_path):
    storage.write_text(tmp_path / "f.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_incomplete_s3_dir_is_refused(s3_bucket, tmp_path):
    storage.write_text(s3_bucket + "/half/part-0", "x")  # no _SUCCESS: a writer died
    with pytest.raises(SlamError, match="incomplete"):
        storage.download_dir(s3_bucket + "/half", tmp_path / "d")


def test_missing_things_are_clear_errors(s3_bucket, tmp_path):
    with pytest.raises(SlamError, match="file not found"):
        storage.read_bytes(tmp_path / "nope")
    with pytest.raises(SlamError, match="S3 NoSuchKey"):
        storage.read_bytes(s3_bucket + "/nope")
