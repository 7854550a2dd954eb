"""One contract, every checkpoint storage: a directory, and S3 on a real moto server (127.0.0.1)."""

from __future__ import annotations

import asyncio
import itertools
import os
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from streamlet.errors import ConfigError
from streamlet.state.errors import CheckpointNotFoundError
from streamlet.config import load
from streamlet.keys import KeyGroupRange
from streamlet.state import create_backend
from streamlet.state.storage import open_storage, storage_options
from tests.support.s3 import moto_server

STORAGES = ["file", "s3"]
_buckets = itertools.count()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """One moto server for the module (stopped at its end, also after failures)."""
    with moto_server() as endpoint:
        yield endpoint


def _s3_root(endpoint: str) -> Any:
    bucket = f"chk-{os.getpid()}-{next(_buckets)}"  # a fresh bucket per test: nothing leaks between tests
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10).read()
    cfg = load(overrides={"s3.endpoint": endpoint, "s3.access-key": "testing", "s3.secret-key": "testing"}, env={})
    uri = f"s3://{bucket}/some/prefix"
    return open_storage(uri, storage_options(uri, cfg))


@pytest.fixture(params=STORAGES)
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "file":
        return open_storage((tmp_path / "chk root").as_uri())
    return _s3_root(request.getfixturevalue("s3_endpoint"))


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


def test_rocksdb_checkpoint_through_the_storage_restores_at_another_parallelism(root: Any, tmp_path: Path) -> None:
    """Incremental rocksdb files (put_file/get_file) and ranged timer reads through each storage."""
    job = root.scoped("job-1")
    old = create_backend("rocksdb", KeyGroupRange(0, 127), 128, options={"local_dir": str(tmp_path / "a")})
    expected = {f"k{i}": i for i in range(2000)}

    async def scenario() -> list[dict[str, int]]:
        v = old.value_state("v")
        for k, i in expected.items():
            v.put(k, i)
            old.timer_queue("t").add(k, None, i)
        handle = await (await old.snapshot(1)).persist(job)
        assert handle["shared"] and all(job.exists(p) for p in handle["shared"])
        got = []
        for i in range(2):
            new = create_backend("rocksdb", KeyGroupRange.for_subtask(i, 2, 128), 128,
                                 options={"local_dir": str(tmp_path / f"n{i}")})
            await new.restore([handle], job)
            got.append(dict(new.value_state("v").items()))
            assert len(new.timer_queue("t")) == len(got[-1])
            await new.close()
        await old.close()
        return got

    parts = asyncio.run(scenario())
    assert {**parts[0], **parts[1]} == expected and not set(parts[0]) & set(parts[1])


def test_s3_uri_and_options_errors() -> None:
    with pytest.raises(ConfigError, match="names no bucket"):
        open_storage("s3://")
    with pytest.raises(ConfigError, match=r"unknown s3 storage option\(s\) \['colour'\]"):
        open_storage("s3://bucket/p", {"colour": "red"})
    with pytest.raises(ConfigError, match="s3 options apply to s3:// uris only"):
        open_storage("/tmp/x", {"endpoint": "http://127.0.0.1:1"})
    assert storage_options("/tmp/x", load(env={})) == {}
