"""Log lines: one per event, with component, job id and subtask; text and JSON."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from streamlet.logging import JsonFormatter, TextFormatter, _Context, set_log_context


def _capture(fmt: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(_Context())
    handler.setFormatter(fmt)
    logger = logging.getLogger("streamlet.runtime.taskmanager.test_logging")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, buf


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_each_task_logs_its_own_job_and_subtask_on_one_line(fmt: str) -> None:
    logger, buf = _capture(JsonFormatter() if fmt == "json" else TextFormatter())

    async def subtask(job: str, name: str) -> None:
        set_log_context(job, name)
        await asyncio.sleep(0)  # interleave with the other task
        try:
            raise ValueError("bad\nrecord")
        except ValueError:
            logger.exception("subtask %s failed", name)

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(subtask("a" * 32, "map (1/2)"))
            tg.create_task(subtask("b" * 32, "map (2/2)"))
        logger.info("not about a job")

    asyncio.run(main())
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3  # the tracebacks are folded into their lines
    if fmt == "json":
        rows = [json.loads(line) for line in lines]
        assert [(r["job_id"], r["subtask"]) for r in rows] == [("a" * 32, "map (1/2)"), ("b" * 32, "map (2/2)"),
                                                               (None, None)]
        assert all(r["component"] == "runtime.taskmanager.test_logging" for r in rows)
        assert "ValueError: bad" in rows[0]["exception"] and rows[0]["level"] == "ERROR"
        assert rows[2]["message"] == "not about a job"
    else:
        assert f"[job={'a' * 32} subtask=map (1/2)]" in lines[0] and "ValueError: bad\\nrecord" in lines[0]
        assert f"[job={'b' * 32} subtask=map (2/2)]" in lines[1]
        assert "runtime.taskmanager.test_logging: not about a job" in lines[2] and "[job=" not in lines[2]


def test_a_jobmanager_process_logs_json_lines(tmp_path) -> None:
    """``streamlet jobmanager --log-format json``: every line on stderr is one JSON object."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "streamlet", "jobmanager", "--log-format", "json",
                             "-D", "rest.port=0", "-D", "jobmanager.rpc.port=0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path,
                            env={**os.environ, "STREAMLET_TOKEN": ""})
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())  # blocks until the first event: "jobmanager up"
        assert first["component"] == "runtime.jobmanager.process" and "jobmanager up" in first["message"]
        assert first["level"] == "INFO" and first["job_id"] is None and first["time"].endswith("+00:00")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    for line in rest.splitlines():
        assert isinstance(json.loads(line), dict)
    assert proc.returncode == 0
