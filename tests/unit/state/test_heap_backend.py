"""Heap-specific guarantees: the hot path is the dict's own methods; restore reads only its key groups."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamlet.keys import KeyGroupRange, key_group_for
from streamlet.state import create_backend
from streamlet.state.errors import StateRestoreError
from streamlet.state.heap.backend import HeapKeyedStateBackend
from streamlet.state.storage import open_storage


def test_value_state_get_put_are_the_dicts_bound_methods() -> None:
    v = HeapKeyedStateBackend(KeyGroupRange(0, 127), 128).value_state("counts")
    assert type(v.get).__name__ == "builtin_function_or_method" and isinstance(v.get.__self__, dict)
    assert v.put.__self__ is v.get.__self__ and v.put.__name__ == "__setitem__"


def test_restore_reads_only_the_key_groups_it_owns(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    old = create_backend("heap", KeyGroupRange(0, 127), 128)
    keys = [f"k{i}" for i in range(500)]
    for k in keys:
        old.value_state("v").put(k, k.upper())

    async def checkpoint() -> dict:
        return await (await old.snapshot(3)).persist(storage)

    handle = asyncio.run(checkpoint())
    mine = KeyGroupRange(40, 80)
    # overwrite every section outside 40..80 with garbage: a restore that read them would fail
    data = bytearray(storage.get(handle["path"]))
    for kg, off, n in handle["offsets"]:
        if kg not in mine:
            data[off:off + n] = b"\xff" * n
    storage.put(handle["path"], bytes(data))
    new = create_backend("heap", mine, 128)
    asyncio.run(new.restore([handle], storage))
    expected = {k: k.upper() for k in keys if key_group_for(k, 128) in mine}
    assert dict(new.value_state("v").items()) == expected and expected
    broken = create_backend("heap", KeyGroupRange(0, 39), 128)
    with pytest.raises(StateRestoreError, match="is corrupt"):  # the garbage is read when owned
        asyncio.run(broken.restore([handle], storage))
