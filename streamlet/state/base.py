"""Keyed state contract, shared by every backend (heap now; RocksDB with the state issue).

Operators get state only through :class:`KeyedStateBackend`.  State is scoped to a key (and, for
windows later, a namespace folded into the key); the key group of a key is derived from the key
itself (:func:`streamlet.keys.key_group_for`) when a snapshot is taken, so the per-record path is
a plain lookup.

Per-record calls (``get``/``put``) are on the hot path: backends expose them as bound methods
that cost one dict operation (heap) or one write-cache operation (RocksDB).
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol


class ValueState(Protocol):
    """One value per key."""

    def get(self, key: Any, default: Any = None) -> Any:
        """The key's value, or ``default``."""

    def put(self, key: Any, value: Any) -> None:
        """Set the key's value (also after mutating the object ``get`` returned)."""

    def delete(self, key: Any) -> None:
        """Remove the key's value."""

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every (key, value) this subtask holds, in first-insertion order."""

    def __len__(self) -> int:
        """Number of keys held."""


class KeyedStateBackend(Protocol):
    """Keyed state of one subtask (its key-group range)."""

    def value_state(self, name: str) -> ValueState:
        """The value state called ``name`` (created on first use)."""

    def snapshot(self) -> dict[str, dict[int, list[tuple[Any, Any]]]]:
        """Every state as ``{state name: {key group: [(key, value), ...]}}``."""

    def restore(self, snapshot: dict[str, dict[int, list[tuple[Any, Any]]]]) -> None:
        """Load the entries of the key groups this subtask owns from ``snapshot``."""
