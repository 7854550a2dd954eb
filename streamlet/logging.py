"""Logging set-up of the ``streamlet`` processes (library code only calls ``logging.getLogger``).

Every log event is one line (a traceback is folded into it) with the component (the logger's
name without ``streamlet.``), and the job id and subtask it concerns when there is one:

* text (``log.format: text``)::

    2024-05-01 12:00:00,123 WARNING runtime.taskmanager.executor [job=3f2a... subtask=sums (2/4)] subtask ...

* JSON (``log.format: json``, ``--log-format json``): one object per line with ``time`` (ISO-8601,
  UTC), ``level``, ``component``, ``job_id``, ``subtask``, ``message`` and, for an error with a
  traceback, ``exception``.

The job and subtask come from context variables (:func:`set_log_context`): a subtask's task sets
them when it starts, so everything logged from inside it carries them without each call site
passing them; the JobMaster's task sets the job id.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import sys
from typing import Any

import orjson

#: the job and subtask of what is being logged (None: not about one)
_JOB: contextvars.ContextVar[str | None] = contextvars.ContextVar("streamlet_job_id", default=None)
_SUBTASK: contextvars.ContextVar[str | None] = contextvars.ContextVar("streamlet_subtask", default=None)


def set_log_context(job_id: str | None = None, subtask: str | None = None) -> None:
    """Tag every later log line of the current asyncio task (or thread) with a job and subtask."""
    _JOB.set(job_id)
    _SUBTASK.set(subtask)


def _component(name: str) -> str:
    return name[len("streamlet."):] if name.startswith("streamlet.") else name


class _Context(logging.Filter):
    """Adds ``component``, ``job_id`` and ``subtask`` to every record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = _component(record.name)
        if getattr(record, "job_id", None) is None:
            record.job_id = _JOB.get()
        if getattr(record, "subtask", None) is None:
            record.subtask = _SUBTASK.get()
        return True


class TextFormatter(logging.Formatter):
    """``time level component [job=.. subtask=..] message``, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        tags = []
        if getattr(record, "job_id", None):
            tags.append(f"job={record.job_id}")
        if getattr(record, "subtask", None):
            tags.append(f"subtask={record.subtask}")
        where = f" [{' '.join(tags)}]" if tags else ""
        text = (f"{self.formatTime(record)} {record.levelname} {getattr(record, 'component', record.name)}{where}: "
                f"{record.getMessage()}")
        if record.exc_info:
            text += " | " + self.formatException(record.exc_info)
        if record.stack_info:
            text += " | " + self.formatStack(record.stack_info)
        # one event, one line: a multi-line message or traceback keeps its breaks as "\n"
        return text.replace("\r", "").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "component": getattr(record, "component", record.name),
            "job_id": getattr(record, "job_id", None), "subtask": getattr(record, "subtask", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log lines to stderr at ``level``, as ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
