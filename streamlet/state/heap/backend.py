"""Heap keyed state: Python dicts, one table per namespace per state.

Each state keeps ``{namespace: {key: stored}}``; the default namespace's dict always exists, so
a value state's ``get``/``put`` can be that dict's own bound methods (one dict operation per
record, no TTL, no namespace lookup).  With TTL a stored entry is ``(value, expires_at_ms)``
and reads drop expired entries.  Snapshots are taken by :mod:`streamlet.state.heap.snapshot`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

from streamlet.clock import Clock, SystemClock
from streamlet.keys import KeyGroupRange
from streamlet.state.base import VOID, Key, Namespace, StateDescriptor, StateKind
from streamlet.state.errors import StateDescriptorError
from streamlet.state.timers import HeapTimerQueue

_MISSING: Any = object()


class _HeapState:
    """Storage and whole-namespace access shared by every heap state kind."""

    def __init__(self, descriptor: StateDescriptor, clock: Clock) -> None:
        self.descriptor = descriptor
        self._clock = clock
        self._ttl_ms = descriptor.ttl_ms
        #: namespace -> key -> stored (value, or (value, expires_at_ms) with TTL)
        self._tables: dict[Namespace, dict[Key, Any]] = {VOID: {}}
        self._default = self._tables[VOID]

    # -- raw access (stored values, TTL applied) ------------------------------------------------

    def _read(self, key: Key, namespace: Namespace) -> Any:
        table = self._tables.get(namespace)
        if table is None:
            return _MISSING
        if self._ttl_ms is None:
            return table.get(key, _MISSING)
        entry = table.get(key)
        if entry is None:
            return _MISSING
        if entry[1] <= self._clock.time_ms():
            self._remove(key, namespace)
            return _MISSING
        return entry[0]

    def _write(self, key: Key, namespace: Namespace, value: Any) -> None:
        table = self._tables.get(namespace)
        if table is None:
            table = self._tables[namespace] = {}
        table[key] = value if self._ttl_ms is None else (value, self._clock.time_ms() + self._ttl_ms)

    def _remove(self, key: Key, namespace: Namespace) -> None:
        table = self._tables.get(namespace)
        if table is not None:
            table.pop(key, None)
            if not table and namespace is not VOID:
                del self._tables[namespace]  # windows come and go: never keep empty tables

    def _live(self, table: dict[Key, Any]) -> Iterator[tuple[Key, Any]]:
        if self._ttl_ms is None:
            yield from table.items()
            return
        now = self._clock.time_ms()
        for key, (value, expires) in list(table.items()):
            if expires > now:
                yield key, value

    def _present(self, stored: Any) -> Any:
        """What ``items`` yields for a stored value (the kind's ``get`` result)."""
        return stored

    # -- State protocol -------------------------------------------------------------------------

    def items(self, namespace: Namespace = VOID) -> Iterator[tuple[Key, Any]]:
        table = self._tables.get(namespace)
        if table is None:
            return iter(())
        present = self._present
        return ((k, present(v)) for k, v in self._live(table))

    def namespaces(self) -> Iterator[Namespace]:
        for ns, table in list(self._tables.items()):
            if next(self._live(table), None) is not None:
                yield ns

    def clear_namespace(self, namespace: Namespace) -> None:
        if namespace is VOID:
            self._default.clear()  # in place: get/put are bound to this dict
        else:
            self._tables.pop(namespace, None)

    async def collect(self, namespace: Namespace = VOID) -> list[tuple[Key, Any]]:
        return list(self.items(namespace))

    def __len__(self) -> int:
        """Entries over every namespace (expired ones included until they are read)."""
        return sum(len(t) for t in self._tables.values())

    # -- restore --------------------------------------------------------------------------------

    def adopt(self, descriptor: StateDescriptor) -> None:
        """Take the registered ``descriptor`` for a state created by a restore (same kind)."""
        had_ttl = self._ttl_ms is not None
        self.descriptor = descriptor
        self._ttl_ms = descriptor.ttl_ms
        if had_ttl == (self._ttl_ms is not None):
            return
        # TTL switched on or off between runs: convert stored entries (fresh TTL starts now)
        for table in self._tables.values():
            if self._ttl_ms is None:
                for k, (v, _) in list(table.items()):
                    table[k] = v
            else:
                expires = self._clock.time_ms() + self._ttl_ms
                for k, v in list(table.items()):
                    table[k] = (v, expires)


class HeapValueState(_HeapState):
    """A :class:`~streamlet.state.base.ValueState` in dicts.

    Without TTL ``get`` and ``put`` are the default namespace dict's ``get`` and ``__setitem__``.
    """

    def __init__(self, descriptor: StateDescriptor, clock: Clock) -> None:
        super().__init__(descriptor, clock)
        self._bind()

    def _bind(self) -> None:
        if self._ttl_ms is None:
            self.get: Callable[[Key], Any] = self._default.get
            self.put: Callable[[Key, Any], None] = self._default.__setitem__
            return
        default, ttl_ms, time_ms = self._default, self._ttl_ms, self._clock.time_ms

        def get(key: Key, fallback: Any = None) -> Any:
            entry = default.get(key)
            if entry is None:
                return fallback
            if entry[1] <= time_ms():
                del default[key]
                return fallback
            return entry[0]

        def put(key: Key, value: Any) -> None:
            default[key] = (value, time_ms() + ttl_ms)

        self.get, self.put = get, put

    def adopt(self, descriptor: StateDescriptor) -> None:
        super().adopt(descriptor)
        self._bind()

    def delete(self, key: Key) -> None:
        self._default.pop(key, None)

    def get_ns(self, key: Key, namespace: Namespace) -> Any:
        v = self._read(key, namespace)
        return None if v is _MISSING else v

    def put_ns(self, key: Key, namespace: Namespace, value: Any) -> None:
        self._write(key, namespace, value)

    def delete_ns(self, key: Key, namespace: Namespace) -> None:
        self._remove(key, namespace)


class HeapListState(_HeapState):
    """A :class:`~streamlet.state.base.ListState` in dicts (stored: a list)."""

    def get(self, key: Key, namespace: Namespace = VOID) -> list[Any]:
        v = self._read(key, namespace)
        return [] if v is _MISSING else v

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        current = self._read(key, namespace)
        if current is _MISSING:
            self._write(key, namespace, [value])
        else:
            current.append(value)
            if self._ttl_ms is not None:
                self._write(key, namespace, current)  # a write refreshes the TTL

    def add_all(self, key: Key, values: Sequence[Any], namespace: Namespace = VOID) -> None:
        if not values:
            return
        current = self._read(key, namespace)
        self._write(key, namespace, list(values) if current is _MISSING else current + list(values))

    def update(self, key: Key, values: Sequence[Any], namespace: Namespace = VOID) -> None:
        if values:
            self._write(key, namespace, list(values))
        else:
            self._remove(key, namespace)

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        self._remove(key, namespace)


class HeapMapState(_HeapState):
    """A :class:`~streamlet.state.base.MapState` in dicts (stored: a dict of user keys)."""

    def get(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> Any:
        m = self._read(key, namespace)
        return None if m is _MISSING else m.get(user_key)

    def put(self, key: Key, user_key: Key, value: Any, namespace: Namespace = VOID) -> None:
        m = self._read(key, namespace)
        if m is _MISSING:
            self._write(key, namespace, {user_key: value})
        else:
            m[user_key] = value
            if self._ttl_ms is not None:
                self._write(key, namespace, m)

    def put_all(self, key: Key, entries: Mapping[Key, Any], namespace: Namespace = VOID) -> None:
        if not entries:
            return
        m = self._read(key, namespace)
        if m is _MISSING:
            m = {}
        m.update(entries)
        self._write(key, namespace, m)

    def remove(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> None:
        m = self._read(key, namespace)
        if m is _MISSING:
            return
        m.pop(user_key, None)
        if not m:
            self._remove(key, namespace)
        elif self._ttl_ms is not None:
            self._write(key, namespace, m)

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


class HeapReducingState(_HeapState):
    """A :class:`~streamlet.state.base.ReducingState` in dicts (stored: the reduced value)."""

    def get(self, key: Key, namespace: Namespace = VOID) -> Any:
        v = self._read(key, namespace)
        return None if v is _MISSING else v

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        current = self._read(key, namespace)
        self._write(key, namespace, value if current is _MISSING else self.descriptor.reduce(current, value))  # type: ignore[misc]

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        self._remove(key, namespace)


class HeapAggregatingState(_HeapState):
    """An :class:`~streamlet.state.base.AggregatingState` in dicts (stored: the accumulator)."""

    def get(self, key: Key, namespace: Namespace = VOID) -> Any:
        acc = self._read(key, namespace)
        return None if acc is _MISSING else self.descriptor.aggregate.get_result(acc)  # type: ignore[union-attr]

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        agg = self.descriptor.aggregate
        acc = self._read(key, namespace)
        if acc is _MISSING:
            acc = agg.create_accumulator()  # type: ignore[union-attr]
        self._write(key, namespace, agg.add(value, acc))  # type: ignore[union-attr]

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        self._remove(key, namespace)

    def _present(self, stored: Any) -> Any:
        return self.descriptor.aggregate.get_result(stored)  # type: ignore[union-attr]


STATE_CLASSES: dict[StateKind, type[_HeapState]] = {
    StateKind.VALUE: HeapValueState,
    StateKind.LIST: HeapListState,
    StateKind.MAP: HeapMapState,
    StateKind.REDUCING: HeapReducingState,
    StateKind.AGGREGATING: HeapAggregatingState,
}


class HeapKeyedStateBackend:
    """A :class:`~streamlet.state.base.KeyedStateBackend` holding everything in Python dicts.

    State lives in the process's memory: it must fit there (use rocksdb otherwise).  Snapshots
    copy it into orjson bytes in the synchronous part and group it by key group in the
    asynchronous part.  ``name`` prefixes the snapshot files this backend writes (e.g. the
    subtask's name); ``clock`` measures TTL (``time_ms``).
    """

    kind = "heap"

    def __init__(self, key_groups: KeyGroupRange, max_parallelism: int, clock: Clock | None = None,
                 name: str | None = None) -> None:
        self.key_groups = key_groups
        self.max_parallelism = max_parallelism
        self.clock: Clock = clock or SystemClock()
        self.name = name
        self._states: dict[str, _HeapState] = {}
        #: restored states no descriptor has claimed yet (kept and snapshotted as they are)
        self._unclaimed: set[str] = set()
        self._timers: dict[str, HeapTimerQueue] = {}
        self._closed = False

    def state(self, descriptor: StateDescriptor) -> Any:
        existing = self._states.get(descriptor.name)
        if existing is None:
            state = self._states[descriptor.name] = STATE_CLASSES[descriptor.kind](descriptor, self.clock)
            return state
        if existing.descriptor.kind is not descriptor.kind:
            msg = (f"state {descriptor.name!r} is a {existing.descriptor.kind.value} state, not "
                   f"{descriptor.kind.value}; give each state its own name")
            raise StateDescriptorError(msg)
        if descriptor.name in self._unclaimed:
            self._unclaimed.discard(descriptor.name)
            existing.adopt(descriptor)
        return existing

    def registered_states(self) -> dict[str, Any]:
        """Every state registered (or restored) so far, by name (queryable state reads them)."""
        return dict(self._states)

    def value_state(self, name: str, ttl: float | None = None) -> HeapValueState:
        return self.state(StateDescriptor(name, StateKind.VALUE, ttl))  # type: ignore[no-any-return]

    def timer_queue(self, name: str) -> HeapTimerQueue:
        queue = self._timers.get(name)
        if queue is None:
            queue = self._timers[name] = HeapTimerQueue(name)
        return queue

    async def maintain(self) -> None:
        return None

    async def snapshot(self, checkpoint_id: int, *, self_contained: bool = False) -> Any:
        from streamlet.state.heap.snapshot import take_snapshot

        return await take_snapshot(self, checkpoint_id)

    async def restore(self, handles: Sequence[Mapping[str, Any]], storage: Any) -> None:
        from streamlet.state.heap.snapshot import restore_into

        await restore_into(self, handles, storage)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        self._states.clear()
        self._timers.clear()

    # -- used by heap/snapshot.py ---------------------------------------------------------------

    def _restored_state(self, name: str, kind: StateKind, has_ttl: bool) -> _HeapState:
        """The state a restore fills; claimed later by :meth:`state` with the real descriptor."""
        existing = self._states.get(name)
        if existing is not None:
            return existing
        placeholder = StateDescriptor(
            name, kind, ttl=1.0 if has_ttl else None,
            reduce=_unclaimed_reduce if kind is StateKind.REDUCING else None,
            aggregate=_UnclaimedAggregate() if kind is StateKind.AGGREGATING else None)  # type: ignore[arg-type]
        self._unclaimed.add(name)
        state = self._states[name] = STATE_CLASSES[kind](placeholder, self.clock)
        return state


def _unclaimed_reduce(a: Any, b: Any) -> Any:
    msg = "a restored reducing state was used before its descriptor was registered; call backend.state(descriptor) first"
    raise StateDescriptorError(msg)


class _UnclaimedAggregate:
    def create_accumulator(self) -> Any:
        return _unclaimed_reduce(None, None)

    add = get_result = lambda self, *a: _unclaimed_reduce(None, None)  # noqa: E731
