"""Files submitted with a job (Python modules its import paths name), on the JobManager and TaskManagers.

They are written to a per-job directory.  Jobs share one interpreter, and another job may ship a
module of the same name with other contents, so a job's code is imported inside
:func:`job_modules`: the directory goes first on ``sys.path`` and modules of colliding names are
taken out of ``sys.modules`` for the import, then put back.  When the job is gone its directory
leaves ``sys.path`` and its modules ``sys.modules`` (:func:`forget_job`).
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Iterator

from streamlet.errors import PipelineDefinitionError


def safe_relative_path(name: str) -> Path:
    """``name`` as a relative path inside a job directory; raises for absolute paths or ``..``."""
    p = PurePosixPath(name.replace("\\", "/"))
    if not name or p.is_absolute() or ".." in p.parts or not p.parts:
        raise PipelineDefinitionError(f"job file name {name!r} must be a relative path without '..', "
                                      "e.g. 'udfs.py' or 'mypkg/text.py'")
    return Path(*p.parts)


#: one job's imports at a time in this process: sys.modules is shared by every TaskManager and the
#: JobManager of a process (MiniCluster, in-process clusters), and one block's clean-up must not
#: take out a module another thread is importing
_IMPORTS = threading.RLock()


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


def _top_level_names(job_dir: Path) -> set[str]:
    names = set()
    for entry in job_dir.iterdir():
        if entry.is_dir() and entry.name.isidentifier():
            names.add(entry.name)
        elif entry.suffix == ".py" and entry.stem.isidentifier():
            names.add(entry.stem)
    return names


@contextmanager
def job_modules(job_dir: Path | None, keep_on_path: bool = False) -> Iterator[None]:
    """Import a job's code in this block: ``job_dir`` first on ``sys.path``, its module names fresh.

    1. modules named like the job's top-level files or packages (and their submodules) are taken
       out of ``sys.modules``, so the job's own files are imported, not another job's;
    2. after the block the job's modules leave ``sys.modules`` again (what was imported stays
       referenced by the objects built from it) and the taken-out modules come back; the
       directory leaves ``sys.path`` unless ``keep_on_path`` (a TaskManager keeps it while the
       job runs, for imports made at run time, and calls :func:`forget_job` at the end).

    Blocking (file listing, imports; one block at a time per process): call it in a worker thread.
    """
    if job_dir is None:
        yield
        return
    with _IMPORTS:
        yield from _job_modules(job_dir, keep_on_path)


def _job_modules(job_dir: Path, keep_on_path: bool) -> Iterator[None]:
    d = str(job_dir)
    names = _top_level_names(job_dir)
    saved: dict[str, ModuleType] = {}
    for name in list(sys.modules):
        if name.split(".", 1)[0] in names:
            saved[name] = sys.modules.pop(name)
    if d in sys.path:
        sys.path.remove(d)
    sys.path.insert(0, d)
    sys.path_importer_cache.pop(d, None)
    try:
        yield
    finally:
        for name in [n for n in sys.modules if n.split(".", 1)[0] in names]:
            del sys.modules[name]
        sys.modules.update(saved)
        if not keep_on_path and d in sys.path:
            sys.path.remove(d)


def forget_job(job_dir: str | Path) -> None:
    """The job is gone: drop its modules from ``sys.modules`` and its directory from ``sys.path``.

    Waits for another job's imports (:func:`job_modules`): call it in a worker thread.
    """
    with _IMPORTS:
        forget_modules(job_dir)
        d = str(job_dir)
        while d in sys.path:
            sys.path.remove(d)
