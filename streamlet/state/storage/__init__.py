"""Checkpoint storage: the protocol (:mod:`.base`) and :func:`open_storage` for a URI."""

from __future__ import annotations

from typing import Any, Mapping

from streamlet.errors import ConfigError
from streamlet.state.storage.base import CheckpointStorage


def open_storage(uri: str, options: Mapping[str, Any] | None = None) -> CheckpointStorage:
    """The checkpoint storage rooted at ``uri``.

    Who calls it: the JobMaster (metadata, cleanup) and each task (snapshots), with the value of
    ``execution.checkpointing.dir``.  ``uri`` is ``file:///dir`` or a plain path (local or shared
    file system).  ``options`` are backend options (reserved for object stores); a file storage
    takes none.  Creates nothing until the first write.  Example::

        storage = open_storage("file:///tmp/chk").scoped(job_id)
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    if scheme == "file":
        from streamlet.state.storage.filesystem import FileSystemCheckpointStorage, path_from_uri

        return FileSystemCheckpointStorage(path_from_uri(uri))
    msg = f"checkpoint storage uri {uri!r} has an unknown scheme {scheme!r}; use file:///path or a plain path"
    raise ConfigError(msg)


__all__ = ["CheckpointStorage", "open_storage"]
