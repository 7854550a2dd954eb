"""CheckpointStorage: where snapshots, shared files and checkpoint metadata are kept.

Blocking by design: every method does I/O and is meant to run in a thread
(``await asyncio.to_thread(storage.put, path, data)``); nothing here touches the event loop.

Paths are relative, ``/``-separated, without ``..``; a storage is rooted at a URI
(``file:///checkpoints``, a plain path, or ``s3://bucket/prefix``) and :meth:`CheckpointStorage.scoped`
gives a storage rooted below it.  Layout (DESIGN.md 6.8), relative to the checkpoints root::

    <job id>/chk-<n>/_metadata      checkpoint metadata (written with put_atomic, last)
    <job id>/chk-<n>/...            files exclusive to checkpoint n (heap snapshots, rocksdb private files)
    <job id>/shared/...             files several checkpoints reference (incremental rocksdb SSTs)
    <job id>/taskowned/...          files owned by tasks rather than by one checkpoint

Implementations: :mod:`.filesystem` (``file:``/plain paths) and :mod:`.s3` (``s3://``).
Backends receive the job-scoped storage (``root.scoped(job_id)``) and write ``chk-<n>/``,
``shared/`` and ``taskowned/`` below it.  Build one with :func:`streamlet.state.storage.open_storage`.
"""

from __future__ import annotations

from typing import Protocol

METADATA_FILE = "_metadata"
SHARED_DIR = "shared"
TASK_OWNED_DIR = "taskowned"


def checkpoint_dir(checkpoint_id: int) -> str:
    """``chk-<n>``: the directory of checkpoint ``checkpoint_id`` below a job-scoped storage."""
    return f"chk-{checkpoint_id}"


class CheckpointStorage(Protocol):
    """Blob store for checkpoints; blocking calls, safe to call from several threads at once.

    Guarantees: a blob that ``put`` returned for is readable in full by every later ``get`` (also
    from another process or host sharing the URI); ``put_atomic`` is all-or-nothing for readers.
    Not guaranteed: atomicity of plain ``put`` for a concurrent reader of the same path, ordering
    of ``list``.  Missing blobs raise :class:`~streamlet.state.errors.CheckpointNotFoundError`,
    other I/O failures :class:`~streamlet.state.errors.CheckpointStorageError`.
    """

    uri: str

    def scoped(self, prefix: str) -> CheckpointStorage:
        """A storage rooted at ``prefix`` below this one (e.g. the job id)."""

    def put(self, path: str, data: bytes) -> None:
        """Write ``data`` as the blob ``path`` (replacing it), creating directories as needed."""

    def put_atomic(self, path: str, data: bytes) -> None:
        """Write ``path`` so readers see the old blob or the whole new one (temp + rename)."""

    def put_file(self, path: str, local_file: str) -> None:
        """Upload the local file ``local_file`` as the blob ``path`` (streamed; large SSTs)."""

    def get(self, path: str) -> bytes:
        """The whole blob ``path``."""

    def get_range(self, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``offset`` (fewer only at the end of the blob)."""

    def get_file(self, path: str, local_file: str) -> None:
        """Download the blob ``path`` to the local file ``local_file`` (streamed)."""

    def exists(self, path: str) -> bool:
        """Whether the blob ``path`` exists."""

    def size(self, path: str) -> int:
        """The size of the blob ``path`` in bytes."""

    def list(self, prefix: str = "") -> list[str]:
        """Every blob path below the directory ``prefix`` (recursive), relative to this storage, sorted."""

    def delete(self, path: str) -> None:
        """Delete the blob ``path``; no error when it is absent."""

    def delete_prefix(self, prefix: str) -> None:
        """Delete every blob below the directory ``prefix`` (e.g. a subsumed ``chk-<n>``)."""
