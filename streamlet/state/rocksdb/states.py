"""RocksDB state handles: a write cache (Python dicts) in front of one column family per state.

Key layout in a column family: ``key_group (2 bytes, big-endian) + key_bytes(key) + b"\\0" +
namespace bytes`` (``b""`` for VOID, ``key_bytes(ns)`` otherwise).  JSON never contains a raw
zero byte, so the separator is unambiguous, and a key-group range is a contiguous key range.
Values are orjson bytes of the stored value (``[value, expires_at_ms]`` with TTL; a map as
``[[user_key, value], ...]``).

Cache rules (the backend flushes, see backend.py):

* every entry in a cache is written back at a flush (written or loaded, the cache does not track
  which): it holds the latest value of that (key, namespace);
* a delete removes the cache entry and deletes in RocksDB at once (inline, a memtable write);
* a read that misses the cache reads RocksDB inline (a point lookup, microseconds).

The default-namespace value cache is a dict subclass whose ``__missing__`` reads RocksDB: a
value state's ``get``/``put`` are that dict's own ``__getitem__``/``__setitem__`` (dict speed
when the key is cached).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import orjson

from streamlet.keys import key_bytes, stable_hash
from streamlet.state.base import VOID, Key, Namespace, StateDescriptor, StateKind
from streamlet.state.keygroups import thaw

if TYPE_CHECKING:
    from streamlet.state.rocksdb.backend import RocksDBKeyedStateBackend

_MISSING: Any = object()
_loads = orjson.loads
_dumps = orjson.dumps


def namespace_bytes(namespace: Namespace) -> bytes:
    """The namespace part of a RocksDB key."""
    return b"" if namespace is VOID else key_bytes(namespace)


def encode_key(key: Key, ns_bytes: bytes, max_parallelism: int) -> bytes:
    """The RocksDB key of (key, namespace) (see the module docstring)."""
    kb = key_bytes(key)
    return (stable_hash(kb) % max_parallelism).to_bytes(2, "big") + kb + b"\x00" + ns_bytes


def split_key(raw: bytes) -> tuple[bytes, bytes]:
    """``(key bytes, namespace bytes)`` of a RocksDB key."""
    i = raw.index(b"\x00", 2)
    return raw[2:i], raw[i + 1:]


def decode_namespace(ns_bytes: bytes) -> Namespace:
    """The namespace of a RocksDB key's namespace part (hashable again)."""
    return VOID if not ns_bytes else thaw(_loads(ns_bytes))


class RocksState:
    """Storage and whole-namespace access shared by every rocksdb state kind."""

    def __init__(self, backend: RocksDBKeyedStateBackend, descriptor: StateDescriptor) -> None:
        self.backend = backend
        self.descriptor = descriptor
        self._maxp = backend.max_parallelism
        self._clock = backend.clock
        self._ttl_ms = descriptor.ttl_ms
        self._is_map = descriptor.kind is StateKind.MAP
        #: the column family (rocksdict Rdict) and its handle; None until created off the loop
        self.cf: Any = None
        self.cf_handle: Any = None
        #: (key, namespace) -> stored, for every entry but a value state's default namespace
        self.cache: dict[tuple[Key, Namespace], Any] = {}

    # -- encoding -----------------------------------------------------------------------------

    def encode_value(self, stored: Any) -> bytes:
        """The RocksDB value of a stored entry (called by flushes, in a thread)."""
        if self._is_map:
            stored = [list(stored[0].items()), stored[1]] if self._ttl_ms is not None else list(stored.items())
        return _dumps(stored)

    def decode_value(self, data: bytes) -> Any:
        """A stored entry from its RocksDB value (user keys and TTL tuples restored)."""
        stored = _loads(data)
        if self._is_map:
            if self._ttl_ms is not None:
                return {thaw(k): v for k, v in stored[0]}, stored[1]
            return {thaw(k): v for k, v in stored}
        if self._ttl_ms is not None:
            return stored[0], stored[1]
        return stored

    def cached_entries(self) -> Iterator[tuple[Key, Namespace, Any]]:
        """Every cached (key, namespace, stored) (flushes write them)."""
        for (key, ns), stored in self.cache.items():
            yield key, ns, stored

    def cache_len(self) -> int:
        """Entries in this state's write cache."""
        return len(self.cache)

    def clear_cache(self) -> None:
        """Empty the write cache (after a flush wrote it)."""
        self.cache.clear()

    # -- raw access ---------------------------------------------------------------------------

    def _expired(self, stored: Any) -> bool:
        return self._ttl_ms is not None and stored[1] <= self._clock.time_ms()

    def _load(self, key: Key, namespace: Namespace) -> Any:
        cf = self.cf
        if cf is None:
            return _MISSING
        data = cf.get(encode_key(key, namespace_bytes(namespace), self._maxp))
        return _MISSING if data is None else self.decode_value(data)

    def _read(self, key: Key, namespace: Namespace) -> Any:
        ident = (key, namespace)
        stored = self.cache.get(ident, _MISSING)
        if stored is _MISSING:
            stored = self._load(key, namespace)
            if stored is _MISSING:
                return _MISSING
            self.backend._admit()
            self.cache[ident] = stored
        if self._ttl_ms is None:
            return stored
        if stored[1] <= self._clock.time_ms():
            self._remove(key, namespace)
            return _MISSING
        return stored[0]

    def _write(self, key: Key, namespace: Namespace, value: Any) -> None:
        self.backend._admit()
        self.cache[(key, namespace)] = value if self._ttl_ms is None else (value, self._clock.time_ms() + self._ttl_ms)

    def _db_delete(self, key: Key, namespace: Namespace) -> None:
        if self.cf is not None:
            self.cf.delete(encode_key(key, namespace_bytes(namespace), self._maxp))

    def _remove(self, key: Key, namespace: Namespace) -> None:
        self.cache.pop((key, namespace), None)
        self._db_delete(key, namespace)

    def _present(self, stored: Any) -> Any:
        return stored

    # -- whole namespaces ---------------------------------------------------------------------

    def _db_entries(self, ns_bytes: bytes | None) -> Iterator[tuple[Key, bytes, Any]]:
        """(key, namespace bytes, stored) of RocksDB entries (of one namespace when given)."""
        if self.cf is None:
            return
        for raw, data in self.cf.items():
            kb, nsb = split_key(raw)
            if ns_bytes is not None and nsb != ns_bytes:
                continue
            yield thaw(_loads(kb)), nsb, self.decode_value(data)

    def _cached_in(self, namespace: Namespace) -> dict[Key, Any]:
        return {k: v for (k, ns), v in self.cache.items() if ns == namespace}

    def _entries_of(self, namespace: Namespace) -> Iterator[tuple[Key, Any]]:
        cached = self._cached_in(namespace)
        live = not self._ttl_ms
        now = self._clock.time_ms()
        for key, _, stored in self._db_entries(namespace_bytes(namespace)):
            if key not in cached and (live or stored[1] > now):
                yield key, stored if live else stored[0]
        for key, stored in cached.items():
            if live or stored[1] > now:
                yield key, stored if live else stored[0]

    def items(self, namespace: Namespace = VOID) -> Iterator[tuple[Key, Any]]:
        present = self._present
        return ((k, present(v)) for k, v in list(self._entries_of(namespace)))

    def namespaces(self) -> Iterator[Namespace]:
        seen: set[bytes] = set()
        out: list[Namespace] = []
        now = self._clock.time_ms()
        for key, ns, stored in list(self.cached_entries()):
            nsb = namespace_bytes(ns)
            if nsb not in seen and (self._ttl_ms is None or stored[1] > now):
                seen.add(nsb)
                out.append(ns)
        for _, nsb, stored in self._db_entries(None):
            if nsb not in seen and (self._ttl_ms is None or stored[1] > now):
                seen.add(nsb)
                out.append(decode_namespace(nsb))
        # a namespace whose only live entries are cached deletions would be listed: recheck
        return iter([ns for ns in out if next(self._entries_of(ns), None) is not None])

    def clear_namespace(self, namespace: Namespace) -> None:
        for key in list(self._cached_in(namespace)):
            self._drop_cached(key, namespace)
        nsb = namespace_bytes(namespace)
        if self.cf is not None:
            doomed = [raw for raw in self.cf.keys() if split_key(raw)[1] == nsb]
            for raw in doomed:
                self.cf.delete(raw)

    def _drop_cached(self, key: Key, namespace: Namespace) -> None:
        self.cache.pop((key, namespace), None)

    async def collect(self, namespace: Namespace = VOID) -> list[tuple[Key, Any]]:
        return await self.backend._off_loop(lambda: list(self.items(namespace)))  # type: ignore[no-any-return]


class _ValueCache(dict):  # type: ignore[type-arg]
    """The default-namespace cache of a value state; a miss reads RocksDB (returns None if absent)."""

    __slots__ = ("state",)

    def __missing__(self, key: Key) -> Any:
        state = self.state
        cf = state.cf
        if cf is None:
            return None
        state.backend._admit()
        data = cf.get(encode_key(key, b"", state._maxp))
        return None if data is None else state.decode_value(data)


class RocksValueState(RocksState):
    """A :class:`~streamlet.state.base.ValueState`; ``get``/``put`` are the cache dict's own methods."""

    def __init__(self, backend: RocksDBKeyedStateBackend, descriptor: StateDescriptor) -> None:
        super().__init__(backend, descriptor)
        self.vcache = _ValueCache()
        self.vcache.state = self
        self._bind()

    def _bind(self) -> None:
        vcache = self.vcache
        if self._ttl_ms is None:
            self.get: Callable[[Key], Any] = vcache.__getitem__
            self.put: Callable[[Key, Any], None] = vcache.__setitem__
            return
        ttl_ms, time_ms = self._ttl_ms, self._clock.time_ms

        def get(key: Key) -> Any:
            entry = vcache[key]
            if entry is None:
                return None
            if entry[1] <= time_ms():
                self.delete(key)
                return None
            return entry[0]

        def put(key: Key, value: Any) -> None:
            vcache[key] = (value, time_ms() + ttl_ms)

        self.get, self.put = get, put

    def cached_entries(self) -> Iterator[tuple[Key, Namespace, Any]]:
        for key, stored in self.vcache.items():
            yield key, VOID, stored
        yield from super().cached_entries()

    def cache_len(self) -> int:
        return len(self.vcache) + len(self.cache)

    def clear_cache(self) -> None:
        self.vcache.clear()
        self.cache.clear()

    def _cached_in(self, namespace: Namespace) -> dict[Key, Any]:
        return dict(self.vcache) if namespace is VOID else super()._cached_in(namespace)

    def _drop_cached(self, key: Key, namespace: Namespace) -> None:
        if namespace is VOID:
            self.vcache.pop(key, None)
        else:
            super()._drop_cached(key, namespace)

    def delete(self, key: Key) -> None:
        self.vcache.pop(key, None)
        self._db_delete(key, VOID)

    def get_ns(self, key: Key, namespace: Namespace) -> Any:
        if namespace is VOID:
            return self.get(key)
        v = self._read(key, namespace)
        return None if v is _MISSING else v

    def put_ns(self, key: Key, namespace: Namespace, value: Any) -> None:
        if namespace is VOID:
            self.put(key, value)
        else:
            self._write(key, namespace, value)

    def delete_ns(self, key: Key, namespace: Namespace) -> None:
        if namespace is VOID:
            self.delete(key)
        else:
            self._remove(key, namespace)


class RocksListState(RocksState):
    """A :class:`~streamlet.state.base.ListState` (stored: the whole list as one value)."""

    def get(self, key: Key, namespace: Namespace = VOID) -> list[Any]:
        v = self._read(key, namespace)
        return [] if v is _MISSING else v

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        current = self._read(key, namespace)
        self._write(key, namespace, [value] if current is _MISSING else current + [value])

    def add_all(self, key: Key, values: Sequence[Any], namespace: Namespace = VOID) -> None:
        if values:
            current = self._read(key, namespace)
            self._write(key, namespace, list(values) if current is _MISSING else current + list(values))

    def update(self, key: Key, values: Sequence[Any], namespace: Namespace = VOID) -> None:
        if values:
            self._write(key, namespace, list(values))
        else:
            self._remove(key, namespace)

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        self._remove(key, namespace)


class RocksMapState(RocksState):
    """A :class:`~streamlet.state.base.MapState` (stored: the whole map as one value)."""

    def get(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> Any:
        m = self._read(key, namespace)
        return None if m is _MISSING else m.get(user_key)

    def put(self, key: Key, user_key: Key, value: Any, namespace: Namespace = VOID) -> None:
        m = self._read(key, namespace)
        m = {} if m is _MISSING else dict(m)
        m[user_key] = value
        self._write(key, namespace, m)

    def put_all(self, key: Key, entries: Mapping[Key, Any], namespace: Namespace = VOID) -> None:
        if entries:
            m = self._read(key, namespace)
            m = {} if m is _MISSING else dict(m)
            m.update(entries)
            self._write(key, namespace, m)

    def remove(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> None:
        m = self._read(key, namespace)
        if m is _MISSING or user_key not in m:
            return
        m = dict(m)
        del m[user_key]
        if m:
            self._write(key, namespace, m)
        else:
            self._remove(key, namespace)

    def contains(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> bool:
        m = self._read(key, namespace)
        return m is not _MISSING and user_key in m

    def entries(self, key: Key, namespace: Namespace = VOID) -> dict[Key, Any]:
        m = self._read(key, namespace)
        return {} if m is _MISSING else dict(m)

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        self._remove(key, namespace)

    def _present(self, stored: Any) -> Any:
        return dict(stored)


class RocksReducingState(RocksState):
    """A :class:`~streamlet.state.base.ReducingState`."""

    def get(self, key: Key, namespace: Namespace = VOID) -> Any:
        v = self._read(key, namespace)
        return None if v is _MISSING else v

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        current = self._read(key, namespace)
        self._write(key, namespace, value if current is _MISSING else self.descriptor.reduce(current, value))  # type: ignore[misc]

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        self._remove(key, namespace)


class RocksAggregatingState(RocksState):
    """An :class:`~streamlet.state.base.AggregatingState` (stored: the accumulator)."""

    def get(self, key: Key, namespace: Namespace = VOID) -> Any:
        acc = self._read(key, namespace)
        return None if acc is _MISSING else self.descriptor.aggregate.get_result(acc)  # type: ignore[union-attr]

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        agg = self.descriptor.aggregate
        acc = self._read(key, namespace)
        self._write(key, namespace, agg.add(value, agg.create_accumulator() if acc is _MISSING else acc))  # type: ignore[union-attr]

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        self._remove(key, namespace)

    def _present(self, stored: Any) -> Any:
        return self.descriptor.aggregate.get_result(stored)  # type: ignore[union-attr]


STATE_CLASSES: dict[StateKind, type[RocksState]] = {
    StateKind.VALUE: RocksValueState,
    StateKind.LIST: RocksListState,
    StateKind.MAP: RocksMapState,
    StateKind.REDUCING: RocksReducingState,
    StateKind.AGGREGATING: RocksAggregatingState,
}
