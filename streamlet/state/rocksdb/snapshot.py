"""RocksDB checkpoints: native checkpoint at the barrier, incremental upload in the background.

Synchronous part (:func:`take_snapshot`, off the loop): flush the write cache into the database
(one WriteBatch; the caches are emptied), then ``Checkpoint(db).create_checkpoint(dir)``, which
flushes the memtables and hard-links the live SST files into ``dir``; timers are copied.

Asynchronous part (:meth:`RocksDBSnapshot.persist`, in a thread):

1. every SST file (immutable, named uniquely within this database instance) is either
   referenced from the last *completed* checkpoint's uploads (``confirmed_ssts``: not uploaded
   again), or uploaded to ``shared/<backend name>-<instance>-<file>``;
2. the other files (MANIFEST, CURRENT, OPTIONS, WAL, rocksdict's config) go to the
   checkpoint's exclusive directory ``chk-<n>/<name>-<instance>/``, as does the timers file;
3. with ``incremental: false`` or ``self_contained`` (savepoints) every file goes to the
   exclusive directory and ``shared`` is empty;
4. the local checkpoint directory is removed.

The handle (JSON)::

    {"backend": "rocksdb", "format": 1, "checkpoint_id": n, "max_parallelism": 128,
     "key_groups": [start, end], "files": {"000012.sst": "shared/...", "CURRENT": "chk-n/...", ...},
     "shared": ["shared/...", ...], "states": {"name": ["value", false], ...},
     "timers": {"path": "chk-n/.../timers", "offsets": [[kg, offset, length], ...]} or null,
     "bytes_total": ..., "bytes_uploaded": ...}
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streamlet.keys import key_group_for
from streamlet.state.keygroups import join_sections
from streamlet.state.storage.base import SHARED_DIR, checkpoint_dir

if TYPE_CHECKING:
    from streamlet.state.rocksdb.backend import RocksDBKeyedStateBackend

FORMAT = 1


def _native_checkpoint(backend: RocksDBKeyedStateBackend, target: Path) -> None:
    from rocksdict import Checkpoint

    # evict: a cached entry is written back at every flush, so keeping the cache warm across a
    # checkpoint would rewrite (and re-upload) every hot key; a hot key is re-read once instead
    backend.flush_caches(evict=True)
    shutil.rmtree(target, ignore_errors=True)
    Checkpoint(backend.db).create_checkpoint(str(target))


async def take_snapshot(backend: RocksDBKeyedStateBackend, checkpoint_id: int, self_contained: bool) -> RocksDBSnapshot:
    """The synchronous part of a rocksdb checkpoint (see the module docstring)."""
    target = backend.root / f"chk-{checkpoint_id}"
    await backend._off_loop(_native_checkpoint, backend, target)
    timers = {name: list(q) for name, q in backend._timers.items()}
    incremental = backend.options.incremental and not self_contained
    return RocksDBSnapshot(backend, checkpoint_id, target, timers, incremental,
                           dict(backend.confirmed_ssts) if incremental else {})


class RocksDBSnapshot:
    """A native RocksDB checkpoint waiting to be uploaded (a :class:`~streamlet.state.base.StateSnapshot`)."""

    def __init__(self, backend: RocksDBKeyedStateBackend, checkpoint_id: int, local: Path,
                 timers: dict[str, list[Any]], incremental: bool, reusable: dict[str, str]) -> None:
        self.checkpoint_id = checkpoint_id
        self._backend = backend
        self._local: Path | None = local
        self._timers = timers
        self._incremental = incremental
        self._reusable = reusable
        self._meta = {k: list(v) for k, v in backend.state_meta.items()}

    def discard(self) -> None:
        if self._local is not None:
            shutil.rmtree(self._local, ignore_errors=True)
            self._local = None

    async def persist(self, storage: Any, *, directory: str | None = None) -> dict[str, Any]:
        if self._local is None:
            msg = f"snapshot of checkpoint {self.checkpoint_id} was already persisted or discarded; take a new one"
            raise RuntimeError(msg)
        local, self._local = self._local, None
        exclusive = f"{directory or checkpoint_dir(self.checkpoint_id)}/{self._backend.name}-{self._backend.instance}"
        try:
            handle = await self._backend._off_loop(self._upload, storage, local, exclusive)
        finally:
            await self._backend._off_loop(shutil.rmtree, local, True)
        if self._incremental:
            self._backend.pending_ssts[self.checkpoint_id] = {
                name: path for name, path in handle["files"].items() if name.endswith(".sst")}
        return handle

    def _upload(self, storage: Any, local: Path, exclusive: str) -> dict[str, Any]:
        b = self._backend
        files: dict[str, str] = {}
        shared: list[str] = []
        total = uploaded = 0
        for name in sorted(os.listdir(local)):
            path = local / name
            size = path.stat().st_size
            total += size
            if self._incremental and name.endswith(".sst"):
                ref = self._reusable.get(name)
                if ref is None:
                    ref = f"{SHARED_DIR}/{b.name}-{b.instance}-{name}"
                    storage.put_file(ref, str(path))
                    uploaded += size
                shared.append(ref)
            else:
                ref = f"{exclusive}/{name}"
                storage.put_file(ref, str(path))
                uploaded += size
            files[name] = ref
        timers = None
        if any(self._timers.values()):
            maxp = b.max_parallelism
            groups: dict[int, dict[str, list[Any]]] = {}
            for qname, entries in self._timers.items():
                for ts, key, ns in entries:
                    groups.setdefault(key_group_for(key, maxp), {}).setdefault(qname, []).append([ts, key, ns])
            blob, offsets = join_sections({kg: orjson.dumps({"t": g}) for kg, g in groups.items()})
            timers = {"path": f"{exclusive}/timers", "offsets": offsets}
            storage.put(timers["path"], blob)
            uploaded += len(blob)
            total += len(blob)
        return {
            "backend": "rocksdb", "format": FORMAT, "checkpoint_id": self.checkpoint_id,
            "max_parallelism": b.max_parallelism, "key_groups": [b.key_groups.start, b.key_groups.end],
            "incremental": self._incremental, "files": files, "shared": shared, "states": self._meta,
            "timers": timers, "bytes_total": total, "bytes_uploaded": uploaded,
        }
