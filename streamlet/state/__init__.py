"""Keyed state: the contract (:mod:`.base`), backends (``heap/``, ``rocksdb/``), checkpoint storage.

Entry points the runtime calls:

* :func:`create_backend` (``streamlet.state.factory``): one backend per subtask, by kind;
* :func:`streamlet.state.storage.open_storage`: checkpoint storage for a URI;
* the backend's ``snapshot`` / ``persist`` / ``restore`` / ``notify_checkpoint_complete`` /
  ``close`` (steps in :mod:`streamlet.state.base`).

Operators use state handles obtained with a :class:`StateDescriptor`.
"""

from __future__ import annotations

from streamlet.state.base import VOID, KeyedStateBackend, StateDescriptor, StateKind
from streamlet.state.factory import BACKEND_KINDS, create_backend

__all__ = ["BACKEND_KINDS", "VOID", "KeyedStateBackend", "StateDescriptor", "StateKind", "create_backend"]
