"""Heap snapshots: orjson copy at the barrier, key-group file in the background, ranged restore.

Synchronous part (:func:`take_snapshot`): one ``orjson.dumps`` per state of
``[[namespace, [[key, stored], ...]], ...]``.  The bytes are the consistent copy: values the
operators mutate in place afterwards cannot change them.  Timers are copied as tuples.

Asynchronous part (:meth:`HeapSnapshot.persist`, in a thread): decode, drop expired TTL entries,
group by key group (:func:`streamlet.keys.key_group_for`), and write one file whose per-key-group
sections are listed in the handle (Flink's KeyGroupsStateHandle offsets)::

    {"backend": "heap", "format": 1, "checkpoint_id": 7, "max_parallelism": 128,
     "key_groups": [0, 63], "path": "chk-7/<name>-<uuid>.heap", "size": 12345,
     "offsets": [[kg, offset, length], ...],          # ascending key groups
     "states": {"name": ["value", has_ttl], ...}, "timers": ["name", ...], "shared": []}

A section is ``orjson({"s": {state: [[ns, key, stored], ...]}, "t": {queue: [[ts, key, ns], ...]}})``
where ``stored`` is the value (``[value, expires_at_ms]`` with TTL; a map's value is its
``[[user_key, value], ...]``).  :func:`restore_into` reads, per handle, one byte range covering
the key groups it owns.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import orjson

from streamlet.keys import key_group_for
from streamlet.state.base import StateKind
from streamlet.state.errors import StateDescriptorError, StateRestoreError
from streamlet.state.keygroups import join_sections, read_sections, thaw
from streamlet.state.storage.base import checkpoint_dir

if TYPE_CHECKING:
    from streamlet.state.heap.backend import HeapKeyedStateBackend

FORMAT = 1
#: below this many entries the copy runs on the loop (a thread hop costs more than the copy)
_INLINE_ENTRIES = 20_000


def _capture(backend: HeapKeyedStateBackend) -> tuple[list[tuple[str, str, bool, bytes]], dict[str, list[Any]]]:
    states = []
    for name, state in backend._states.items():
        kind = state.descriptor.kind
        has_ttl = state._ttl_ms is not None
        tables = []
        for ns, table in state._tables.items():
            if not table:
                continue
            if kind is StateKind.MAP:
                if has_ttl:
                    entries = [(k, (list(m.items()), exp)) for k, (m, exp) in table.items()]
                else:
                    entries = [(k, list(m.items())) for k, m in table.items()]
            else:
                entries = list(table.items())
            tables.append((ns, entries))
        try:
            blob = orjson.dumps(tables)
        except TypeError as exc:
            msg = (f"state {name!r} holds a value that is not JSON ({exc}); store JSON values "
                   "(dict, list, str, int, float, bool, None)")
            raise StateDescriptorError(msg) from exc
        states.append((name, kind.value, has_ttl, blob))
    timers = {name: list(q) for name, q in backend._timers.items()}
    return states, timers


async def take_snapshot(backend: HeapKeyedStateBackend, checkpoint_id: int) -> HeapSnapshot:
    """The synchronous part of a heap checkpoint (see the module docstring)."""
    size = sum(len(s) for s in backend._states.values()) + sum(len(q) for q in backend._timers.values())
    if size < _INLINE_ENTRIES:
        states, timers = _capture(backend)
    else:
        # the task processes nothing meanwhile; the thread keeps the loop (heartbeats) responsive
        states, timers = await asyncio.to_thread(_capture, backend)
    return HeapSnapshot(checkpoint_id, backend.max_parallelism, backend.key_groups.start,
                        backend.key_groups.end, backend.name, backend.clock.time_ms(), states, timers)


class HeapSnapshot:
    """The captured copy of a heap backend (a :class:`~streamlet.state.base.StateSnapshot`)."""

    def __init__(self, checkpoint_id: int, max_parallelism: int, kg_start: int, kg_end: int, name: str | None,
                 now_ms: int, states: list[tuple[str, str, bool, bytes]], timers: dict[str, list[Any]]) -> None:
        self.checkpoint_id = checkpoint_id
        self._max_parallelism = max_parallelism
        self._range = [kg_start, kg_end]
        self._name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) if name else "heap"
        self._now_ms = now_ms
        self._states: list[tuple[str, str, bool, bytes]] | None = states
        self._timers: dict[str, list[Any]] | None = timers

    def discard(self) -> None:
        self._states = self._timers = None

    async def persist(self, storage: Any, *, directory: str | None = None) -> dict[str, Any]:
        if self._states is None or self._timers is None:
            msg = f"snapshot of checkpoint {self.checkpoint_id} was already persisted or discarded; take a new one"
            raise RuntimeError(msg)
        states, timers = self._states, self._timers
        self._states = self._timers = None
        path = f"{directory or checkpoint_dir(self.checkpoint_id)}/{self._name}-{uuid.uuid4().hex}.heap"
        return await asyncio.to_thread(self._write, storage, path, states, timers)

    def _write(self, storage: Any, path: str, states: list[tuple[str, str, bool, bytes]],
               timers: dict[str, list[Any]]) -> dict[str, Any]:
        maxp, now = self._max_parallelism, self._now_ms
        groups: dict[int, dict[str, dict[str, list[Any]]]] = {}

        def section(kg: int) -> dict[str, dict[str, list[Any]]]:
            g = groups.get(kg)
            if g is None:
                g = groups[kg] = {"s": {}, "t": {}}
            return g

        for name, _, has_ttl, blob in states:
            for ns, entries in orjson.loads(blob):
                for key, stored in entries:
                    if has_ttl and stored[1] <= now:
                        continue  # expired entries never come back
                    section(key_group_for(key, maxp))["s"].setdefault(name, []).append([ns, key, stored])
        for name, queue in timers.items():
            for ts, key, ns in queue:
                section(key_group_for(key, maxp))["t"].setdefault(name, []).append([ts, key, ns])
        blob, offsets = join_sections({kg: orjson.dumps(g) for kg, g in groups.items()})
        pos = len(blob)
        if offsets:
            storage.put(path, blob)
        return {
            "backend": "heap", "format": FORMAT, "checkpoint_id": self.checkpoint_id,
            "max_parallelism": maxp, "key_groups": list(self._range),
            "path": path if offsets else None, "size": pos, "offsets": offsets,
            "states": {name: [kind, has_ttl] for name, kind, has_ttl, _ in states},
            "timers": sorted(timers), "shared": [],
        }


def _check(handle: Mapping[str, Any], max_parallelism: int) -> None:
    if handle.get("backend") != "heap":
        msg = (f"cannot restore a {handle.get('backend')!r} state snapshot with the heap backend; "
               "set state.backend.type (or the pipeline's state.backend) to the backend that wrote it")
        raise StateRestoreError(msg)
    if handle.get("format") != FORMAT:
        msg = f"heap snapshot format {handle.get('format')!r} is not supported (this version reads {FORMAT})"
        raise StateRestoreError(msg)
    if handle.get("max_parallelism") != max_parallelism:
        msg = (f"snapshot was taken with max_parallelism {handle.get('max_parallelism')!r}, the job now has "
               f"{max_parallelism}; max_parallelism cannot change across a restore, set it back")
        raise StateRestoreError(msg)


async def restore_into(backend: HeapKeyedStateBackend, handles: Sequence[Mapping[str, Any]], storage: Any) -> None:
    """Fill a fresh heap backend with the key groups it owns from ``handles``."""
    for handle in handles:
        _check(handle, backend.max_parallelism)
    start, end = backend.key_groups.start, backend.key_groups.end

    def load() -> None:
        for handle in handles:
            kinds = {name: (StateKind(kind), bool(ttl)) for name, (kind, ttl) in handle["states"].items()}
            for kg, data in read_sections(storage, handle['path'], handle['offsets'], start, end):
                try:
                    section = orjson.loads(data)
                except orjson.JSONDecodeError as exc:
                    msg = (f"key group {kg} of checkpoint file {handle['path']!r} is corrupt ({exc}); "
                           "restore from an earlier checkpoint")
                    raise StateRestoreError(msg) from exc
                for name, entries in section["s"].items():
                    kind, has_ttl = kinds[name]
                    state = backend._restored_state(name, kind, has_ttl)
                    if (state._ttl_ms is not None) != has_ttl or state.descriptor.kind is not kind:
                        msg = f"state {name!r} was registered with another kind or ttl before restore; restore first"
                        raise StateRestoreError(msg)
                    tables = state._tables
                    for ns, key, stored in entries:
                        if kind is StateKind.MAP:
                            if has_ttl:
                                stored = ({thaw(uk): v for uk, v in stored[0]}, stored[1])
                            else:
                                stored = {thaw(uk): v for uk, v in stored}
                        elif has_ttl:
                            stored = (stored[0], stored[1])
                        ns = thaw(ns)
                        table = tables.get(ns)
                        if table is None:
                            table = tables[ns] = {}
                        table[thaw(key)] = stored
                for name, timers in section["t"].items():
                    queue = backend.timer_queue(name)
                    for ts, key, ns in timers:
                        queue.add(thaw(key), thaw(ns), ts)

    await asyncio.to_thread(load)
