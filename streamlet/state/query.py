"""Queryable state: the live value of one key in the states of one operator.

A keyed operator names its states after its node id: ``<node>`` (running aggregates, reduce) or
``<node>/<name>`` (windows, process functions, joins).  :func:`read_key` reads every such state
of a backend for one key, in every namespace the state has (a window's slices, for instance).

The read is of *live* state: what the operator holds now, including updates no checkpoint has
covered yet, so a value read here may be lost (and recomputed differently) by a failure and
restore.  It runs on the task's event loop between batches; for the RocksDB backend, listing the
namespaces of a state reads the whole column family (at most :data:`MAX_NAMESPACES` are returned).
"""

from __future__ import annotations

from typing import Any

from streamlet.keys import freeze
from streamlet.state.base import VOID, StateKind

#: namespaces returned per state (a state with more answers the first ones and says so)
MAX_NAMESPACES = 1000


def _read(state: Any, key: Any, namespace: Any) -> tuple[bool, Any]:
    kind = state.descriptor.kind
    if kind is StateKind.VALUE:
        value = state.get_ns(key, namespace)
        return value is not None, value
    if kind is StateKind.LIST:
        values = state.get(key, namespace)
        return bool(values), list(values or [])
    if kind is StateKind.MAP:
        entries = state.entries(key, namespace)
        return bool(entries), [[k, v] for k, v in entries.items()]
    value = state.get(key, namespace)
    return value is not None, value


def read_key(backend: Any, node_id: str, key: Any) -> dict[str, Any]:
    """``{"states": [{"name", "kind", "namespace", "value"}], "truncated"}`` for ``key`` in the
    states of ``node_id`` (``name`` without the node prefix, ``value`` for the state itself; the
    namespace is null for the default one).  An absent key gives no entries."""
    key = freeze(key)
    out: list[dict[str, Any]] = []
    truncated = False
    for name, state in sorted(backend.registered_states().items()):
        if name != node_id and not name.startswith(node_id + "/"):
            continue
        short = name[len(node_id) + 1:] or "value"
        namespaces = [VOID]
        for i, ns in enumerate(state.namespaces()):
            if i >= MAX_NAMESPACES:
                truncated = True
                break
            if ns is not VOID:
                namespaces.append(ns)
        for ns in namespaces:
            found, value = _read(state, key, ns)
            if found:
                out.append({"name": short, "kind": state.descriptor.kind.value,
                            "namespace": list(ns) if isinstance(ns, tuple) else ns, "value": value})
    return {"states": out, "truncated": truncated}


def node_states(backend: Any, node_id: str) -> list[str]:
    """Names of the states ``node_id`` registered (empty: it keeps no keyed state here)."""
    return [n for n in backend.registered_states() if n == node_id or n.startswith(node_id + "/")]
