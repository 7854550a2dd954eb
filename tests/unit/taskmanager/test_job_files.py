"""Job files: a job's modules are imported in a block of their own, one block at a time per process
(every TaskManager and the JobManager of a MiniCluster share one sys.modules)."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

from streamlet.runtime.job_files import forget_job, job_modules, write_job_files


def test_two_jobs_with_a_module_of_the_same_name_each_import_their_own(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_job_files(a, {"samename_mod.py": b"WHO = 'a'\n"})
    write_job_files(b, {"samename_mod.py": b"WHO = 'b'\n"})
    try:
        with job_modules(a, keep_on_path=True):
            first = importlib.import_module("samename_mod")
        with job_modules(b, keep_on_path=True):
            second = importlib.import_module("samename_mod")
        assert (first.WHO, second.WHO) == ("a", "b")
        assert "samename_mod" not in sys.modules  # each block took its modules out again
    finally:
        forget_job(a)
        forget_job(b)
    assert str(a) not in sys.path and str(b) not in sys.path


def test_a_second_block_waits_until_the_first_has_put_sys_modules_back(tmp_path: Path) -> None:
    """Two TaskManagers of one process deploy the same job at once: the first block's clean-up
    (taking the job's modules out of sys.modules) must not run while the second imports them
    (it did: importlib raised KeyError: 'burn_mod')."""
    job = tmp_path / "job"
    write_job_files(job, {"shared_mod.py": b"VALUE = 42\n"})
    inside, release = threading.Event(), threading.Event()
    entered_second = threading.Event()
    seen: list[int] = []

    def first() -> None:
        with job_modules(job, keep_on_path=True):
            seen.append(importlib.import_module("shared_mod").VALUE)
            inside.set()
            release.wait(30)

    def second() -> None:
        inside.wait(30)
        with job_modules(job, keep_on_path=True):
            entered_second.set()
            seen.append(importlib.import_module("shared_mod").VALUE)

    t1, t2 = threading.Thread(target=first), threading.Thread(target=second)
    t1.start()
    t2.start()
    try:
        assert inside.wait(30)
        t2.join(0.3)  # it has had the time to enter, were it not held back
        assert not entered_second.is_set()
        release.set()
        t1.join(30)
        t2.join(30)
        assert entered_second.is_set() and seen == [42, 42]
    finally:
        release.set()
        t1.join(30)
        t2.join(30)
        forget_job(job)
