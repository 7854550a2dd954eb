"""RocksDB restore: download a checkpoint and open it; on a rescale keep only the own key groups.

1. The handles whose key-group range overlaps this subtask's are the relevant ones.
2. The one overlapping most becomes the base: its files are downloaded into ``db_dir`` and
   opened; key groups outside this subtask's range are dropped with ``delete_range`` on every
   column family (contiguous ranges, thanks to the key-group prefix).
3. Each other relevant handle is downloaded into a temporary directory and opened, and the
   entries of this subtask's key groups are copied over with WriteBatches.
4. Timers are read from each relevant handle's timers file (only this subtask's sections).
5. Without a rescale (one handle, the same range) the restored SST files are the ones the handle
   references, so the next incremental checkpoint reuses them (``confirmed_ssts``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import orjson

from streamlet.state.errors import StateRestoreError
from streamlet.state.keygroups import read_sections, thaw
from streamlet.state.rocksdb.backend import CF_PREFIX
from streamlet.state.rocksdb.snapshot import FORMAT

if TYPE_CHECKING:
    from streamlet.state.rocksdb.backend import RocksDBKeyedStateBackend

_COPY_BATCH = 50_000


def _check(handle: Mapping[str, Any], max_parallelism: int) -> None:
    if handle.get("backend") != "rocksdb":
        msg = (f"cannot restore a {handle.get('backend')!r} state snapshot with the rocksdb backend; "
               "set state.backend.type (or the pipeline's state.backend) to the backend that wrote it")
        raise StateRestoreError(msg)
    if handle.get("format") != FORMAT:
        msg = f"rocksdb snapshot format {handle.get('format')!r} is not supported (this version reads {FORMAT})"
        raise StateRestoreError(msg)
    if handle.get("max_parallelism") != max_parallelism:
        msg = (f"snapshot was taken with max_parallelism {handle.get('max_parallelism')!r}, the job now has "
               f"{max_parallelism}; max_parallelism cannot change across a restore, set it back")
        raise StateRestoreError(msg)


def _overlap(handle: Mapping[str, Any], start: int, end: int) -> int:
    lo, hi = handle["key_groups"]
    return max(0, min(hi, end) - max(lo, start) + 1)


def _download(handle: Mapping[str, Any], storage: Any, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, path in handle["files"].items():
        storage.get_file(path, str(target / name))


def _copy_range(source_dir: Path, backend: RocksDBKeyedStateBackend, start: int, end: int) -> None:
    import rocksdict

    families = [cf for cf in rocksdict.Rdict.list_cf(str(source_dir)) if cf.startswith(CF_PREFIX)]
    opts = backend.options.to_options()
    src = rocksdict.Rdict(str(source_dir), opts, column_families={cf: backend.options.to_options() for cf in families})
    try:
        lo, hi = start.to_bytes(2, "big"), (end + 1).to_bytes(2, "big")
        for cf_name in families:
            source = src.get_column_family(cf_name)
            try:
                target = backend.db.get_column_family(cf_name)
            except Exception:  # noqa: BLE001 - rocksdict raises a plain exception for a missing family
                target = backend.db.create_column_family(cf_name, backend.options.to_options())
            handle = backend.db.get_column_family_handle(cf_name)
            batch, n = rocksdict.WriteBatch(raw_mode=True), 0
            for raw, data in source.items(from_key=lo):
                if raw[:2] >= hi:
                    break
                batch.put(raw, data, handle)
                n += 1
                if n == _COPY_BATCH:
                    backend.db.write(batch, backend._write_options)
                    batch, n = rocksdict.WriteBatch(raw_mode=True), 0
            if n:
                backend.db.write(batch, backend._write_options)
            del source, target
    finally:
        src.close()


def _clip(backend: RocksDBKeyedStateBackend, start: int, end: int) -> None:
    lo, hi = start.to_bytes(2, "big"), (end + 1).to_bytes(2, "big")
    for cf_name in backend.db.list_cf(str(backend.db_dir)):
        if not cf_name.startswith(CF_PREFIX):
            continue
        cf = backend.db.get_column_family(cf_name)
        if start > 0:
            cf.delete_range(b"\x00\x00", lo)
        cf.delete_range(hi, b"\xff\xff\xff")


async def restore_into(backend: RocksDBKeyedStateBackend, handles: Sequence[Mapping[str, Any]], storage: Any) -> None:
    """Fill a fresh rocksdb backend with the key groups it owns from ``handles``."""
    for handle in handles:
        _check(handle, backend.max_parallelism)
    if backend.db is not None or backend._states:
        msg = "restore must come first, on a fresh rocksdb backend (before any state is used); restore before open()"
        raise StateRestoreError(msg)
    start, end = backend.key_groups.start, backend.key_groups.end
    relevant = [h for h in handles if _overlap(h, start, end)]
    relevant.sort(key=lambda h: -_overlap(h, start, end))

    def load() -> None:
        for h in handles:
            for name, meta in h["states"].items():
                backend.state_meta.setdefault(name, list(meta))
        if not relevant:
            backend.open_db()
            return
        base, others = relevant[0], relevant[1:]
        _download(base, storage, backend.db_dir)
        backend.open_db()
        if base["key_groups"] != [start, end]:
            _clip(backend, start, end)
        for i, other in enumerate(others):
            tmp = backend.root / f"restore-{i}"
            try:
                _download(other, storage, tmp)
                _copy_range(tmp, backend, start, end)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        if not others and base["key_groups"] == [start, end] and base.get("incremental"):
            backend.confirmed_ssts = {n: p for n, p in base["files"].items() if n.endswith(".sst")}
        for h in relevant:
            timers = h.get("timers")
            if not timers:
                continue
            for kg, data in read_sections(storage, timers["path"], timers["offsets"], start, end):
                try:
                    section = orjson.loads(data)
                except orjson.JSONDecodeError as exc:
                    msg = f"key group {kg} of timers file {timers['path']!r} is corrupt ({exc}); restore an earlier checkpoint"
                    raise StateRestoreError(msg) from exc
                for qname, entries in section["t"].items():
                    queue = backend.timer_queue(qname)
                    for ts, key, ns in entries:
                        queue.add(thaw(key), thaw(ns), ts)

    await backend._off_loop(load)
