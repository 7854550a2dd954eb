"""Heap keyed state: one dict per state."""

from __future__ import annotations

from typing import Any, Iterator

from streamlet.keys import KeyGroupRange, key_group_for


class HeapValueState:
    """A dict-backed :class:`~streamlet.state.base.ValueState`.

    ``get`` and ``put`` are the dict's own bound methods: the per-record cost is one dict
    operation.
    """

    __slots__ = ("name", "_data", "get", "put")

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[Any, Any] = {}
        self.get = self._data.get
        self.put = self._data.__setitem__

    def delete(self, key: Any) -> None:
        self._data.pop(key, None)

    def items(self) -> Iterator[tuple[Any, Any]]:
        return iter(self._data.items())

    def __len__(self) -> int:
        return len(self._data)


class HeapKeyedStateBackend:
    """Keyed state of one subtask, held in dicts."""

    def __init__(self, key_groups: KeyGroupRange, max_parallelism: int) -> None:
        self.key_groups = key_groups
        self.max_parallelism = max_parallelism
        self._states: dict[str, HeapValueState] = {}

    def value_state(self, name: str) -> HeapValueState:
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = HeapValueState(name)
        return state

    def snapshot(self) -> dict[str, dict[int, list[tuple[Any, Any]]]]:
        out: dict[str, dict[int, list[tuple[Any, Any]]]] = {}
        for name, state in self._states.items():
            groups: dict[int, list[tuple[Any, Any]]] = {}
            for k, v in state.items():
                groups.setdefault(key_group_for(k, self.max_parallelism), []).append((k, v))
            out[name] = groups
        return out

    def restore(self, snapshot: dict[str, dict[int, list[tuple[Any, Any]]]]) -> None:
        for name, groups in snapshot.items():
            state = self.value_state(name)
            for kg, entries in groups.items():
                if int(kg) in self.key_groups:
                    for k, v in entries:
                        state.put(k, v)
