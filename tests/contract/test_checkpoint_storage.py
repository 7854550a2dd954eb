"""One contract, every checkpoint storage (file now; s3 joins the parameter list)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from streamlet.errors import ConfigError
from streamlet.state.errors import CheckpointNotFoundError
from streamlet.state.storage import open_storage

STORAGES = ["file"]


@pytest.fixture(params=STORAGES)
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "file":
        return open_storage((tmp_path / "chk root").as_uri())
    raise AssertionError(request.param)


def test_put_get_ranges_and_sizes(root: Any) -> None:
    data = bytes(range(256)) * 40
    root.put("job/chk-1/a.state", data)
    assert root.get("job/chk-1/a.state") == data
    assert root.get_range("job/chk-1/a.state", 100, 50) == data[100:150]
    assert root.get_range("job/chk-1/a.state", len(data) - 10, 50) == data[-10:], "short at the end"
    assert root.size("job/chk-1/a.state") == len(data)
    root.put("job/chk-1/a.state", b"replaced")
    assert root.get("job/chk-1/a.state") == b"replaced"
    assert root.exists("job/chk-1/a.state") and not root.exists("job/chk-1/b.state")
    root.put("job/empty", b"")
    assert root.get("job/empty") == b"" and root.size("job/empty") == 0


def test_list_scoped_and_delete(root: Any) -> None:
    job = root.scoped("job-7")
    for p in ("chk-1/x", "chk-1/sub/y", "chk-2/_metadata", "shared/s1.sst"):
        job.put(p, p.encode())
    assert job.list() == ["chk-1/sub/y", "chk-1/x", "chk-2/_metadata", "shared/s1.sst"]
    assert job.list("chk-1") == ["chk-1/sub/y", "chk-1/x"]
    assert root.list("job-7/shared") == ["job-7/shared/s1.sst"], "a scoped storage writes below its root"
    assert job.list("nothing-here") == []
    job.delete("chk-1/x")
    job.delete("chk-1/x")  # absent: no error
    job.delete_prefix("chk-1")
    assert job.list() == ["chk-2/_metadata", "shared/s1.sst"]
    job.delete_prefix("no-such-dir")


def test_atomic_metadata_and_files(root: Any, tmp_path: Path) -> None:
    root.put_atomic("job/chk-3/_metadata", b'{"v":1}')
    root.put_atomic("job/chk-3/_metadata", b'{"v":2}')
    assert root.get("job/chk-3/_metadata") == b'{"v":2}'
    assert root.list("job") == ["job/chk-3/_metadata"], "no temporary file is left behind"
    src = tmp_path / "local.sst"
    src.write_bytes(os.urandom(300_000))
    root.put_file("job/shared/one.sst", str(src))
    out = tmp_path / "back.sst"
    root.get_file("job/shared/one.sst", str(out))
    assert out.read_bytes() == src.read_bytes()


def test_missing_blobs_and_bad_paths(root: Any, tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        root.get("job/chk-9/_metadata")
    with pytest.raises(CheckpointNotFoundError):
        root.get_range("job/nope", 0, 1)
    with pytest.raises(CheckpointNotFoundError):
        root.get_file("job/nope", str(tmp_path / "x"))
    for bad in ("/abs", "a/../b", "", "a//b"):
        with pytest.raises(ValueError, match="relative path"):
            root.put(bad, b"x")


def test_open_storage_uris(tmp_path: Path) -> None:
    plain = open_storage(str(tmp_path / "p"))
    plain.put("a", b"1")
    assert (tmp_path / "p" / "a").read_bytes() == b"1"
    assert open_storage((tmp_path / "p").as_uri()).get("a") == b"1"
    with pytest.raises(ConfigError, match="unknown scheme 'gopher'"):
        open_storage("gopher://x/y")
    with pytest.raises(ValueError, match="names host"):
        open_storage("file://otherhost/x")
