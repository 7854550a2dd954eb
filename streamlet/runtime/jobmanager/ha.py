"""Recovery metadata of the JobManager (``high-availability.storageDir``): what a JobManager that
was killed needs to resume its jobs when it is started again.

Layout below the directory (a path shared with the next JobManager; blocking calls, run them in
threads)::

    jobs/<job id>/job.json      the submitted job: its JobGraph, files, savepoint, submission time
    jobs/<job id>/checkpoint    the location of the job's latest completed checkpoint

Both are written atomically (temp file + rename).  A job's directory is removed when the job
reaches a globally terminal state (FINISHED, FAILED, CANCELED); a SUSPENDED job (the JobManager
shut down) is kept, so the next JobManager resumes it.  On start, the Dispatcher resumes every job
found here from its latest checkpoint (or from its start) once TaskManagers offer slots again.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

logger = logging.getLogger(__name__)


@dataclass
class RecoveredJob:
    job_id: str
    graph: dict[str, Any]
    files: dict[str, bytes]
    savepoint_path: str | None
    allow_non_restored_state: bool
    #: location of the latest completed checkpoint (None: none completed)
    checkpoint: str | None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class JobStore:
    """See the module docstring."""

    def __init__(self, directory: str) -> None:
        self.root = Path(directory[len("file://"):] if directory.startswith("file://") else directory) / "jobs"

    def put_job(self, job_id: str, graph: dict[str, Any], files: dict[str, bytes], savepoint_path: str | None,
                allow_non_restored_state: bool) -> None:
        doc = {"job_id": job_id, "graph": graph,
               "files": {p: base64.b64encode(d).decode("ascii") for p, d in files.items()},
               "savepoint_path": savepoint_path, "allow_non_restored_state": allow_non_restored_state}
        _atomic_write(self.root / job_id / "job.json", orjson.dumps(doc))

    def set_checkpoint(self, job_id: str, location: str) -> None:
        if (self.root / job_id).is_dir():
            _atomic_write(self.root / job_id / "checkpoint", location.encode())

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def jobs(self) -> list[RecoveredJob]:
        """Every job kept here; an unreadable entry is logged and skipped (never deleted)."""
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            try:
                doc = orjson.loads((d / "job.json").read_bytes())
                pointer = d / "checkpoint"
                checkpoint = pointer.read_text().strip() if pointer.exists() else None
                out.append(RecoveredJob(doc["job_id"], doc["graph"],
                                        {p: base64.b64decode(v) for p, v in doc["files"].items()},
                                        doc.get("savepoint_path"), bool(doc.get("allow_non_restored_state")),
                                        checkpoint))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.error("recovery metadata in %s cannot be read (%s); that job is not resumed", d, exc)
        return out
