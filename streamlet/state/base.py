"""The keyed-state contract every backend (heap, rocksdb) implements, and its descriptors.

Who uses it:

* operators (aggregate, window, process functions, joins) obtain state handles from the
  subtask's :class:`KeyedStateBackend` with a :class:`StateDescriptor`, in ``open()``;
* the time engineer's timer services keep timers in a backend's :meth:`KeyedStateBackend.timer_queue`;
* the task snapshots the backend at a checkpoint barrier (:meth:`KeyedStateBackend.snapshot`,
  then :meth:`StateSnapshot.persist`), restores it before ``initialize_state``
  (:meth:`KeyedStateBackend.restore`) and forwards ``notify_checkpoint_complete``.

Scoping: every entry belongs to a (key, namespace).  A key is any hashable JSON value (tuples for
composite keys, see :func:`streamlet.keys.freeze`); a namespace is a hashable JSON value too, e.g.
a window ``(start, end)``; :data:`VOID` is the namespace of state that has none.  A key's key
group is :func:`streamlet.keys.key_group_for` (computed when needed, never stored per record in
the heap backend).  Values are JSON values (orjson): a tuple stored in a value comes back as a
list after a restore; keys and namespaces come back as the original hashable values.

Hot path: :attr:`ValueState.get` and :attr:`ValueState.put` (the default namespace) are plain
attributes an operator binds once (generated code calls them per record).  In the heap backend
without TTL they are the dict's own bound methods; namespaced access goes through the ``*_ns``
methods so the default namespace never pays for namespaces.

Checkpoint protocol (the task calls these steps in order):

1. ``snapshot = await backend.snapshot(checkpoint_id)``: the synchronous part.  The task processes
   no record and touches no state until it returns; it captures a copy that later mutations
   (including in-place mutation of values an operator got) cannot change.
2. ``handle = await snapshot.persist(storage)``: the asynchronous part, run while the task goes on
   processing.  It writes to a :class:`~streamlet.state.storage.base.CheckpointStorage` (scoped
   to the job, see that module) and returns a small JSON-able dict for the checkpoint's metadata.
   Every handle has the fields of :data:`HANDLE_FIELDS`; ``"shared"`` lists the storage paths of
   files that several checkpoints may reference (reference-counted by the JobMaster; a backend
   never deletes them itself).
3. ``backend.notify_checkpoint_complete(checkpoint_id)`` once the checkpoint is complete.
4. On recovery (also at another parallelism): ``await backend.restore(handles, storage)`` with the
   handles of every old subtask of the operator; the backend reads only the key groups it owns.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Final, Hashable, Iterator, Mapping, Protocol, Sequence

from streamlet.keys import KeyGroupRange

#: the namespace of state that has none (every handle's default)
VOID: Final = None

#: fields every snapshot handle carries (see the module docstring, step 2)
HANDLE_FIELDS: Final = ("backend", "format", "checkpoint_id", "max_parallelism", "key_groups", "shared")

Key = Hashable
Namespace = Hashable


class StateKind(enum.Enum):
    """The kinds of keyed state (Flink's ValueState, ListState, MapState, Reducing, Aggregating)."""

    VALUE = "value"
    LIST = "list"
    MAP = "map"
    REDUCING = "reducing"
    AGGREGATING = "aggregating"


class AggregateFunction(Protocol):
    """What an aggregating state folds values with (Flink's ``AggregateFunction``).

    The accumulator is what the backend stores, so it must be a JSON value.
    """

    def create_accumulator(self) -> Any:
        """A fresh accumulator for a (key, namespace) that holds none."""

    def add(self, value: Any, accumulator: Any) -> Any:
        """Fold ``value`` into ``accumulator``; return the new accumulator (may be the same object)."""

    def get_result(self, accumulator: Any) -> Any:
        """What :meth:`AggregatingState.get` returns for ``accumulator``."""


@dataclass(frozen=True)
class StateDescriptor:
    """Names a state and fixes its kind; operators pass it to :meth:`KeyedStateBackend.state`.

    ``ttl`` (seconds, None = forever): an entry expires ``ttl`` after its last write (Flink's
    OnCreateAndWrite) and is never returned once expired (NeverReturnExpired), measured on the
    backend's clock (``time_ms``).  Expiry is per (key, namespace) entry: a whole list or map
    expires at once (Flink expires list elements and map entries one by one; that is not done here).
    ``reduce`` is required for :attr:`StateKind.REDUCING`, ``aggregate`` for
    :attr:`StateKind.AGGREGATING`.  Example::

        counts = backend.state(StateDescriptor("counts", StateKind.VALUE, ttl=3600))
    """

    name: str
    kind: StateKind = StateKind.VALUE
    ttl: float | None = None
    reduce: Callable[[Any, Any], Any] | None = None
    aggregate: AggregateFunction | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            msg = f"state name {self.name!r} is not a non-empty string; name the state"
            raise ValueError(msg)
        if self.ttl is not None and not self.ttl > 0:
            msg = f"state {self.name!r}: ttl {self.ttl!r} must be positive seconds or None (no expiry)"
            raise ValueError(msg)
        if self.kind is StateKind.REDUCING and self.reduce is None:
            msg = f"reducing state {self.name!r} has no reduce function; pass reduce=lambda a, b: ..."
            raise ValueError(msg)
        if self.kind is StateKind.AGGREGATING and self.aggregate is None:
            msg = f"aggregating state {self.name!r} has no aggregate function; pass aggregate=..."
            raise ValueError(msg)

    @property
    def ttl_ms(self) -> int | None:
        """``ttl`` in whole milliseconds (None without TTL)."""
        return None if self.ttl is None else max(1, round(self.ttl * 1000))


class State(Protocol):
    """What every state handle offers: whole-namespace access (windows use it).

    Iteration order is unspecified.  ``items``/``namespaces`` must not be interleaved with writes
    to the same state (take a ``list`` first).  In the rocksdb backend they read the database
    inline; async callers with large states use :meth:`collect`.
    """

    descriptor: StateDescriptor

    def items(self, namespace: Namespace = VOID) -> Iterator[tuple[Key, Any]]:
        """Every (key, value) of ``namespace`` on this subtask (value as the kind's ``get`` gives it)."""

    def namespaces(self) -> Iterator[Namespace]:
        """Every namespace that holds at least one (unexpired) entry."""

    def clear_namespace(self, namespace: Namespace) -> None:
        """Drop every key's entry in ``namespace`` (e.g. a window that was purged)."""

    async def collect(self, namespace: Namespace = VOID) -> list[tuple[Key, Any]]:
        """``list(items(namespace))``, read off the event loop where that can block (rocksdb)."""


class ValueState(State, Protocol):
    """One value per (key, namespace).

    ``get(key)``/``put(key, value)`` are attributes (bind them once) for the default namespace:
    ``get`` returns the value or None (a stored None reads as absent); ``put`` stores it.  An
    operator that mutates the object ``get`` returned must ``put`` it again: backends with a
    cache or a serialized store only see writes made through ``put``.
    """

    get: Callable[[Key], Any]
    put: Callable[[Key, Any], None]

    def delete(self, key: Key) -> None:
        """Remove the key's value in the default namespace (no error when absent)."""

    def get_ns(self, key: Key, namespace: Namespace) -> Any:
        """The value of (key, namespace), or None."""

    def put_ns(self, key: Key, namespace: Namespace, value: Any) -> None:
        """Set the value of (key, namespace)."""

    def delete_ns(self, key: Key, namespace: Namespace) -> None:
        """Remove the value of (key, namespace) (no error when absent)."""


class ListState(State, Protocol):
    """A list per (key, namespace); an absent entry reads as ``[]``."""

    def get(self, key: Key, namespace: Namespace = VOID) -> list[Any]:
        """The elements in insertion order (a list the caller must not mutate)."""

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        """Append one element."""

    def add_all(self, key: Key, values: Sequence[Any], namespace: Namespace = VOID) -> None:
        """Append elements in order."""

    def update(self, key: Key, values: Sequence[Any], namespace: Namespace = VOID) -> None:
        """Replace the list (an empty ``values`` clears it)."""

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        """Remove the list."""


class MapState(State, Protocol):
    """A map (user key -> value) per (key, namespace); user keys are hashable JSON values."""

    def get(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> Any:
        """The value under ``user_key``, or None."""

    def put(self, key: Key, user_key: Key, value: Any, namespace: Namespace = VOID) -> None:
        """Set the value under ``user_key``."""

    def put_all(self, key: Key, entries: Mapping[Key, Any], namespace: Namespace = VOID) -> None:
        """Set several user keys."""

    def remove(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> None:
        """Remove ``user_key`` (no error when absent)."""

    def contains(self, key: Key, user_key: Key, namespace: Namespace = VOID) -> bool:
        """Whether ``user_key`` is present."""

    def entries(self, key: Key, namespace: Namespace = VOID) -> dict[Key, Any]:
        """A copy of the whole map ({} when absent)."""

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        """Remove the whole map."""


class ReducingState(State, Protocol):
    """One value per (key, namespace), folded with the descriptor's ``reduce(old, new)``."""

    def get(self, key: Key, namespace: Namespace = VOID) -> Any:
        """The reduced value, or None when nothing was added."""

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        """Store ``value`` (first add) or ``reduce(current, value)``."""

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        """Remove the value."""


class AggregatingState(State, Protocol):
    """An accumulator per (key, namespace), folded with the descriptor's :class:`AggregateFunction`."""

    def get(self, key: Key, namespace: Namespace = VOID) -> Any:
        """``get_result(accumulator)``, or None when nothing was added."""

    def add(self, key: Key, value: Any, namespace: Namespace = VOID) -> None:
        """Fold ``value`` into the accumulator (created on first add)."""

    def clear(self, key: Key, namespace: Namespace = VOID) -> None:
        """Remove the accumulator."""


#: a timer as the queue gives it back
Timer = tuple[int, Key, Namespace]


class TimerQueue(Protocol):
    """A keyed priority queue of timers, deduplicated per (key, namespace, timestamp).

    The time engineer's event-time and processing-time timer services are built on it.  It is
    snapshotted and restored by key group with the rest of the backend.  Among timers with the
    same timestamp the order is unspecified.
    """

    name: str

    def add(self, key: Key, namespace: Namespace, timestamp: int) -> bool:
        """Register a timer; False (and nothing changes) when it is already registered."""

    def delete(self, key: Key, namespace: Namespace, timestamp: int) -> bool:
        """Remove a timer; False when it was not registered."""

    def contains(self, key: Key, namespace: Namespace, timestamp: int) -> bool:
        """Whether the timer is registered."""

    def peek(self) -> Timer | None:
        """The earliest timer ``(timestamp, key, namespace)``, or None when the queue is empty."""

    def pop_until(self, timestamp: int) -> list[Timer]:
        """Remove and return every timer with a timestamp <= ``timestamp``, in timestamp order.

        Timers added while the caller handles the result are not in it (call again to fire them).
        """

    def __len__(self) -> int:
        """Number of registered timers."""


class StateSnapshot(Protocol):
    """The captured copy of a backend at a checkpoint (step 1 of the module docstring)."""

    checkpoint_id: int

    async def persist(self, storage: Any, *, directory: str | None = None) -> dict[str, Any]:
        """Write the copy to ``storage`` (a job-scoped CheckpointStorage); return the JSON handle.

        ``directory`` is where exclusive (non-shared) files go, relative to ``storage``; the
        default is ``chk-<checkpoint_id>``.  Runs its blocking work in threads.  Called at most once.
        Not guaranteed: cleanup of partly written files when it raises (the coordinator drops the
        checkpoint's directory).
        """

    def discard(self) -> None:
        """Release what the snapshot holds without persisting it (checkpoint aborted)."""


class KeyedStateBackend(Protocol):
    """Keyed state of one subtask: the key groups ``key_groups`` of ``max_parallelism``.

    Built by :func:`streamlet.state.create_backend`; single owner (the subtask's task): no
    method may be called concurrently with another, and the synchronous handle methods must not be
    called while an ``await`` on this backend is pending.
    """

    key_groups: KeyGroupRange
    max_parallelism: int

    def state(self, descriptor: StateDescriptor) -> Any:
        """The handle of ``descriptor``'s state (ValueState, ListState, ... by its kind).

        Called in ``open()``; the same descriptor name always gives the same state; a name already
        used with another kind raises :class:`~streamlet.state.errors.StateDescriptorError`.
        """

    def value_state(self, name: str, ttl: float | None = None) -> ValueState:
        """Shorthand for ``state(StateDescriptor(name, StateKind.VALUE, ttl))``."""

    def timer_queue(self, name: str) -> TimerQueue:
        """The timer queue ``name`` (created on first use, restored with the backend)."""

    def registered_states(self) -> dict[str, Any]:
        """Every state registered or restored so far, by name (read by queryable state,
        :mod:`streamlet.state.query`; never for processing)."""

    async def maintain(self) -> None:
        """The task awaits this between batches (never during one).

        Backends with a write cache flush it here, off the event loop, when it is over its bound.
        Returns at once when nothing is due (heap: always).
        """

    async def snapshot(self, checkpoint_id: int, *, self_contained: bool = False) -> StateSnapshot:
        """Step 1 of the checkpoint protocol (see the module docstring).

        ``self_contained`` (savepoints) asks for a snapshot that references no shared file.
        """

    async def restore(self, handles: Sequence[Mapping[str, Any]], storage: Any) -> None:
        """Load the key groups this subtask owns from ``handles`` (of any old parallelism).

        Called once, on a fresh backend, before any state handle is used.  Raises
        :class:`~streamlet.state.errors.StateRestoreError` for a handle of another backend or
        another max parallelism.
        """

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete (its handles are in a completed _metadata)."""

    async def close(self) -> None:
        """Release memory, files and threads; the backend is unusable afterwards.  Idempotent."""
