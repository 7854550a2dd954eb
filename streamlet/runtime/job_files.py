"""Files submitted with a job (Python modules its import paths name), on the JobManager and TaskManagers.

They are written to a per-job directory that is put first on ``sys.path``; when the job is gone
its modules are dropped from ``sys.modules``, since another job may ship a module of the same
name with other contents.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

from streamlet.errors import PipelineDefinitionError


def safe_relative_path(name: str) -> Path:
    """``name`` as a relative path inside a job directory; raises for absolute paths or ``..``."""
    p = PurePosixPath(name.replace("\\", "/"))
    if not name or p.is_absolute() or ".." in p.parts or not p.parts:
        raise PipelineDefinitionError(f"job file name {name!r} must be a relative path without '..', "
                                      "e.g. 'udfs.py' or 'mypkg/text.py'")
    return Path(*p.parts)


def write_job_files(job_dir: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path -> content) under ``job_dir`` (blocking: call in a thread)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = job_dir / safe_relative_path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    # the path finder caches directory listings; a fresh directory must be looked at again
    sys.path_importer_cache.pop(str(job_dir), None)


def forget_modules(job_dir: str | Path) -> list[str]:
    """Drop from ``sys.modules`` every module loaded from ``job_dir``; returns their names."""
    prefix = str(job_dir).rstrip("/") + "/"
    names = [name for name, mod in list(sys.modules.items())
             if (getattr(mod, "__file__", None) or "").startswith(prefix)]
    for name in names:
        del sys.modules[name]
    sys.path_importer_cache.pop(str(job_dir), None)
    return names
