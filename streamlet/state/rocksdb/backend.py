"""RocksDB keyed-state backend (rocksdict): state larger than memory, incremental checkpoints.

Layout on local disk, below ``RocksDBOptions.local_dir``::

    streamlet-rocksdb-<name>-<instance>/db/        the database (a column family per state)
    streamlet-rocksdb-<name>-<instance>/chk-<n>/   native checkpoints (hard links) being uploaded

Threading: every RocksDB call that can take milliseconds (open, column family creation, write
batches, flush, checkpoint, restore, whole-state iteration for ``collect``) goes through
:meth:`RocksDBKeyedStateBackend._off_loop`, the one ``asyncio.to_thread`` wrapper.  Per-record
reads and writes stay inline and hit the write cache; a cache miss is one inline point lookup.
The database is opened lazily, off the loop, at the first flush or at restore: a fresh backend
holds no data, so a miss before that needs no database.

Memory: the caches hold at most about ``cache_entries`` entries between batches (the task's
``await maintain()`` flushes them with one WriteBatch and empties them).  If ``maintain`` is not
called, a cache that reaches four times the bound is flushed inline (logged once).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from streamlet.clock import Clock, SystemClock
from streamlet.keys import KeyGroupRange
from streamlet.state.base import StateDescriptor, StateKind
from streamlet.state.errors import StateDescriptorError
from streamlet.state.rocksdb.options import RocksDBOptions
from streamlet.state.rocksdb.states import STATE_CLASSES, RocksState, encode_key, namespace_bytes
from streamlet.state.timers import HeapTimerQueue

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: column families of states are named with this prefix (RocksDB's own is "default")
CF_PREFIX = "state:"
_ADMIT_EVERY = 1024


class RocksDBKeyedStateBackend:
    """A :class:`~streamlet.state.base.KeyedStateBackend` in RocksDB with a write cache in front.

    Built by ``create_backend("rocksdb", key_groups, max_parallelism, options={...})``
    (see :class:`~streamlet.state.rocksdb.options.RocksDBOptions` for the options).  Timers are
    kept in memory (Flink's HEAP timer service factory) and checkpointed by key group.
    Not guaranteed: per-element TTL in lists and maps (whole entries expire); large maps and lists
    are stored as one value each (every change rewrites the whole value at the next flush).
    """

    kind = "rocksdb"

    def __init__(self, key_groups: KeyGroupRange, max_parallelism: int, clock: Clock | None = None,
                 name: str | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.key_groups = key_groups
        self.max_parallelism = max_parallelism
        self.clock: Clock = clock or SystemClock()
        self.options = RocksDBOptions.from_mapping(options or {})
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) if name else "state"
        self.instance = uuid.uuid4().hex[:12]
        self.root = Path(self.options.local_dir) / f"streamlet-rocksdb-{self.name}-{self.instance}"
        self.db_dir = self.root / "db"
        self.db: Any = None
        self._db_options: Any = None
        self._states: dict[str, RocksState] = {}
        #: state name -> [kind, has_ttl] of every column family the database holds or will hold
        self.state_meta: dict[str, list[Any]] = {}
        self._timers: dict[str, HeapTimerQueue] = {}
        #: SST file name -> shared storage path, of the last completed checkpoint (reused, not uploaded)
        self.confirmed_ssts: dict[str, str] = {}
        #: checkpoint id -> its SST mapping, until notify_checkpoint_complete
        self.pending_ssts: dict[int, dict[str, str]] = {}
        self._admit_countdown = _ADMIT_EVERY
        self._warned_inline_flush = False
        self._closed = False

    # -- the one thread wrapper ------------------------------------------------------------------

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking RocksDB or file work in a thread (every such call goes through here)."""
        return await asyncio.to_thread(fn, *args)

    # -- database (blocking; called in threads) ----------------------------------------------------

    def open_db(self) -> None:
        """Open (or create) the database in ``db_dir`` with every column family it has."""
        if self.db is not None:
            return
        import rocksdict

        self._db_options = self.options.to_options()
        self.db_dir.mkdir(parents=True, exist_ok=True)
        existing = rocksdict.Rdict.list_cf(str(self.db_dir)) if (self.db_dir / "CURRENT").exists() else []
        families = {cf: self.options.to_options() for cf in existing if cf != "default"}
        self.db = rocksdict.Rdict(str(self.db_dir), self._db_options, column_families=families or None)
        wo = rocksdict.WriteOptions()
        wo.disable_wal = True  # durability comes from checkpoints, not the WAL
        self.db.set_write_options(wo)
        self._write_options = wo
        for state in self._states.values():
            self._attach(state, create=False)

    def _attach(self, state: RocksState, create: bool) -> None:
        cf_name = CF_PREFIX + state.descriptor.name
        try:
            cf = self.db.get_column_family(cf_name)
        except Exception:  # noqa: BLE001 - rocksdict raises a plain exception for a missing family
            if not create:
                return
            cf = self.db.create_column_family(cf_name, self.options.to_options())
        cf.set_write_options(self._write_options)
        state.cf = cf
        state.cf_handle = self.db.get_column_family_handle(cf_name)

    def column_families(self) -> list[str]:
        """Names of the states' column families in the open database."""
        return [cf[len(CF_PREFIX):] for cf in self.db.list_cf(str(self.db_dir)) if cf.startswith(CF_PREFIX)]

    def flush_caches(self, evict: bool) -> int:
        """Write every cached entry with one WriteBatch (creating column families); return the count.

        ``evict`` empties the caches afterwards (memory bound); otherwise they stay warm.
        """
        import rocksdict

        self.open_db()
        batch = rocksdict.WriteBatch(raw_mode=True)
        maxp = self.max_parallelism
        now = self.clock.time_ms()
        n = 0
        for state in self._states.values():
            if not state.cache_len():
                continue
            if state.cf is None:
                self._attach(state, create=True)
            handle, enc, has_ttl = state.cf_handle, state.encode_value, state._ttl_ms is not None
            for key, ns, stored in state.cached_entries():
                raw = encode_key(key, namespace_bytes(ns), maxp)
                if has_ttl and stored[1] <= now:
                    batch.delete(raw, handle)
                else:
                    batch.put(raw, enc(stored), handle)
                n += 1
        if n:
            self.db.write(batch, self._write_options)
        if evict:
            for state in self._states.values():
                state.clear_cache()
        return n

    def cached_entries(self) -> int:
        """Entries in every state's write cache."""
        return sum(s.cache_len() for s in self._states.values())

    def _admit(self) -> None:
        """Called on cache growth paths; flushes inline past 4x the bound (maintain() not called)."""
        self._admit_countdown -= 1
        if self._admit_countdown > 0:
            return
        self._admit_countdown = _ADMIT_EVERY
        if self.cached_entries() > 4 * self.options.cache_entries:
            if not self._warned_inline_flush:
                self._warned_inline_flush = True
                logger.warning("rocksdb state %s: write cache at 4x its bound; flushing on the event loop "
                               "(the task should await backend.maintain() between batches)", self.name)
            self.flush_caches(evict=True)

    # -- KeyedStateBackend ----------------------------------------------------------------------------

    def state(self, descriptor: StateDescriptor) -> Any:
        existing = self._states.get(descriptor.name)
        meta = self.state_meta.get(descriptor.name)
        if meta is not None and meta[0] != descriptor.kind.value:
            msg = (f"state {descriptor.name!r} is a {meta[0]} state, not {descriptor.kind.value}; "
                   "give each state its own name")
            raise StateDescriptorError(msg)
        if existing is not None:
            return existing
        if meta is not None and meta[1] != (descriptor.ttl is not None):
            msg = (f"state {descriptor.name!r} was checkpointed {'with' if meta[1] else 'without'} a ttl; the rocksdb "
                   "backend cannot switch ttl on or off for restored state; keep the ttl setting or rename the state")
            raise StateDescriptorError(msg)
        state = self._states[descriptor.name] = STATE_CLASSES[descriptor.kind](self, descriptor)
        self.state_meta[descriptor.name] = [descriptor.kind.value, descriptor.ttl is not None]
        if self.db is not None:
            self._attach(state, create=False)  # a restored column family: a lookup, no I/O
        return state

    def registered_states(self) -> dict[str, Any]:
        """Every state registered (or restored) so far, by name (queryable state reads them)."""
        return dict(self._states)

    def value_state(self, name: str, ttl: float | None = None) -> Any:
        return self.state(StateDescriptor(name, StateKind.VALUE, ttl))

    def timer_queue(self, name: str) -> HeapTimerQueue:
        queue = self._timers.get(name)
        if queue is None:
            queue = self._timers[name] = HeapTimerQueue(name)
        return queue

    async def maintain(self) -> None:
        if self.cached_entries() > self.options.cache_entries:
            await self._off_loop(self.flush_caches, True)

    async def snapshot(self, checkpoint_id: int, *, self_contained: bool = False) -> Any:
        from streamlet.state.rocksdb.snapshot import take_snapshot

        return await take_snapshot(self, checkpoint_id, self_contained)

    async def restore(self, handles: Sequence[Mapping[str, Any]], storage: Any) -> None:
        from streamlet.state.rocksdb.restore import restore_into

        await restore_into(self, handles, storage)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        mapping = self.pending_ssts.pop(checkpoint_id, None)
        if mapping is None:
            return
        self.confirmed_ssts = mapping
        for older in [n for n in self.pending_ssts if n < checkpoint_id]:
            del self.pending_ssts[older]  # subsumed: their uploads are never reused

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        states = list(self._states.values())
        self._states.clear()
        self._timers.clear()

        def shutdown() -> None:
            for state in states:
                state.cf = state.cf_handle = None
                state.clear_cache()
            if self.db is not None:
                self.db.close()
                self.db = None
            shutil.rmtree(self.root, ignore_errors=True)

        await self._off_loop(shutdown)
