"""Identifiers.  Job, vertex and trigger ids are 32 lowercase hex characters (Flink's form)."""

from __future__ import annotations

import hashlib
import uuid
from typing import NewType

JobId = NewType("JobId", str)
VertexId = NewType("VertexId", str)
TaskManagerId = NewType("TaskManagerId", str)
AttemptId = NewType("AttemptId", str)


def new_id() -> str:
    """A fresh 32-hex id (uuid4 without dashes)."""
    return uuid.uuid4().hex


def stable_id(*parts: str) -> str:
    """A deterministic 32-hex id derived from ``parts`` (vertex ids stay equal across runs)."""
    return hashlib.md5("\x00".join(parts).encode()).hexdigest()


def subtask_name(vertex_name: str, index: int, parallelism: int) -> str:
    """Flink's display form ``name (i/p)`` with a 1-based index."""
    return f"{vertex_name} ({index + 1}/{parallelism})"
