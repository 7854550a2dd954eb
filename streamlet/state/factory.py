"""``create_backend``: the keyed-state backend a subtask uses, chosen by configuration."""

from __future__ import annotations

from typing import Any, Mapping

from streamlet.clock import Clock
from streamlet.keys import KeyGroupRange
from streamlet.state.base import KeyedStateBackend
from streamlet.state.errors import StateBackendConfigError

#: the values ``state.backend.type`` and the pipeline's ``state: {backend: ...}`` accept
BACKEND_KINDS = ("heap", "rocksdb")


def create_backend(kind: str, key_groups: KeyGroupRange, max_parallelism: int, *, clock: Clock | None = None,
                   name: str | None = None, options: Mapping[str, Any] | None = None) -> KeyedStateBackend:
    """A fresh keyed-state backend for one subtask.

    Who calls it: the TaskExecutor, once per subtask attempt, before the operators are built;
    ``restore`` (if any) follows before ``initialize_state``.  ``kind`` is ``"heap"`` or
    ``"rocksdb"``; ``key_groups`` is the subtask's range
    (:meth:`streamlet.keys.KeyGroupRange.for_subtask`); ``clock`` measures TTL (default: the
    system clock); ``name`` (e.g. the subtask's name) prefixes the files its snapshots write;
    ``options`` are backend options (heap takes none).  Example::

        backend = create_backend("heap", KeyGroupRange.for_subtask(0, 2, 128), 128)
        counts = backend.value_state("counts")

    Raises :class:`~streamlet.state.errors.StateBackendConfigError` for an unknown kind or option.
    """
    options = dict(options or {})
    if kind == "heap":
        from streamlet.state.heap.backend import HeapKeyedStateBackend

        if options:
            msg = f"the heap state backend takes no options, got {sorted(options)!r}; remove them"
            raise StateBackendConfigError(msg)
        return HeapKeyedStateBackend(key_groups, max_parallelism, clock=clock, name=name)
    if kind == "rocksdb":
        try:
            from streamlet.state.rocksdb.backend import RocksDBKeyedStateBackend
        except ImportError as exc:
            msg = f"the rocksdb state backend is not available ({exc}); use state backend 'heap'"
            raise StateBackendConfigError(msg) from exc
        return RocksDBKeyedStateBackend(key_groups, max_parallelism, clock=clock, name=name, options=options)
    msg = f"unknown state backend {kind!r}; use one of {', '.join(repr(k) for k in BACKEND_KINDS)}"
    raise StateBackendConfigError(msg)


#: configuration key -> rocksdb backend option (see streamlet/config.py for the docs)
_ROCKSDB_KEYS = {
    "state.backend.rocksdb.localdir": "local_dir",
    "state.backend.rocksdb.write-cache.entries": "cache_entries",
    "state.backend.rocksdb.writebuffer.size-mb": "write_buffer_mb",
    "state.backend.rocksdb.block.cache-size-mb": "block_cache_mb",
    "state.backend.rocksdb.thread.num": "background_jobs",
    "execution.checkpointing.incremental": "incremental",
}


def backend_options(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``options`` of :func:`create_backend` for ``kind`` from the effective configuration.

    Who calls it: the TaskExecutor, with its :class:`streamlet.config.Configuration` (keys that are
    unset or absent are left to the backend's defaults).
    """
    if kind != "rocksdb":
        return {}
    return {opt: config[key] for key, opt in _ROCKSDB_KEYS.items() if config.get(key) is not None}
