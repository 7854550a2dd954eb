"""Checkpoint metadata (``_metadata``): what a completed checkpoint or savepoint holds.

One JSON document per checkpoint, written last and atomically (temp file + rename, or one S3
PUT), so a checkpoint directory either has a complete ``_metadata`` or is not a checkpoint::

    {"format": 1, "kind": "checkpoint" | "savepoint", "checkpoint_id": 7, "job_id": "...",
     "job_name": "wordcount", "timestamp": 1700000000000, "max_parallelism": 128,
     "storage": "<URI the state handles' paths are relative to>",
     "vertices": {"<vertex id>": {"name": "...", "parallelism": 2, "operators": ["read", "count"],
                                  "subtasks": {"0": {"operators": {}, "splits": [...], "sink": ...,
                                                      "committables": [...], "keyed": {handle}}}}}}

Layout below the job's checkpoint storage: ``chk-<n>/_metadata`` (checkpoints) and, for a
savepoint, ``<savepoint dir>/savepoint-<job id prefix>-<random>/_metadata``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from streamlet.errors import StreamletError
from streamlet.state.storage import open_storage
from streamlet.state.storage.base import METADATA_FILE

FORMAT = 1


class CheckpointMetadataError(StreamletError):
    """A path that holds no checkpoint or savepoint, or whose ``_metadata`` cannot be read."""


@dataclass
class CompletedCheckpoint:
    """A checkpoint (or savepoint) whose ``_metadata`` is written."""

    checkpoint_id: int
    metadata: dict[str, Any]
    #: URI of the directory holding ``_metadata``
    location: str
    #: storage paths (below the job's storage) of shared files this checkpoint references
    shared: frozenset[str] = frozenset()

    @property
    def savepoint(self) -> bool:
        return self.metadata.get("kind") == "savepoint"


def shared_files(metadata: dict[str, Any]) -> frozenset[str]:
    """Every shared file the state handles of ``metadata`` reference."""
    out: set[str] = set()
    for v in metadata.get("vertices", {}).values():
        for st in v.get("subtasks", {}).values():
            handle = st.get("keyed")
            if isinstance(handle, dict):
                out.update(handle.get("shared") or ())
    return frozenset(out)


def encode(metadata: dict[str, Any]) -> bytes:
    return orjson.dumps(metadata)


def _join(uri: str, name: str) -> str:
    return f"{uri.rstrip('/')}/{name}"


def read_metadata(path: str, options: Any = None) -> CompletedCheckpoint:
    """The checkpoint or savepoint at ``path`` (its directory, or its ``_metadata`` file); blocking.

    Raises :class:`CheckpointMetadataError` naming the path when there is none or it is corrupted.
    """
    location = path[: -len(METADATA_FILE)].rstrip("/") if path.rstrip("/").endswith(METADATA_FILE) else path.rstrip("/")
    try:
        storage = open_storage(location, options or {})
        if not storage.exists(METADATA_FILE):
            raise CheckpointMetadataError(
                f"{location} holds no checkpoint or savepoint (no {METADATA_FILE} file); give the directory of a "
                "savepoint (streamlet savepoint prints it) or of a completed checkpoint (chk-<n>)")
        data = storage.get(METADATA_FILE)
    except CheckpointMetadataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any storage error is the user's path problem here
        raise CheckpointMetadataError(f"cannot read the savepoint at {location}: {type(exc).__name__}: {exc}") from None
    try:
        metadata = orjson.loads(data)
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError(f"unknown format {metadata.get('format') if isinstance(metadata, dict) else None!r}")
        n = int(metadata["checkpoint_id"])
        if not isinstance(metadata["vertices"], dict) or not isinstance(metadata["storage"], str):
            raise ValueError("vertices or storage missing")
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointMetadataError(f"{_join(location, METADATA_FILE)} is corrupted ({exc}); restore from another "
                                      "checkpoint or savepoint") from None
    return CompletedCheckpoint(n, metadata, location, shared_files(metadata))
