"""User functions: inline expressions over ``r`` and import paths ``package.module:name``.

Shared by the planner (which checks them on the client, so a typo fails before submission) and
the operators (which compile them into fused batch functions on the TaskManager).  No code is
pickled: a function travels as its expression text or import path.
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import re
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from streamlet.errors import PipelineDefinitionError

#: names an expression can use besides builtins and ``r``
EXPRESSION_GLOBALS: dict[str, Any] = {"math": math, "re": re, "json": json, "datetime": datetime}


@contextmanager
def search_path(paths: tuple[str, ...] | list[str]) -> Iterator[None]:
    """Temporarily put ``paths`` first on ``sys.path`` (the job's code directories)."""
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            try:
                sys.path.remove(p)
            except ValueError:
                pass


def ensure_on_path(paths: tuple[str, ...] | list[str]) -> None:
    """Put ``paths`` on ``sys.path`` for the life of the process (TaskManager side)."""
    for p in paths:
        if p not in sys.path:
            sys.path.insert(0, p)


def resolve_path(path: str, where: str = "") -> Callable[..., Any]:
    """Import ``package.module:name`` (``name`` may be dotted) and return the callable."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise PipelineDefinitionError(
            f"cannot import {path!r}: {type(exc).__name__}: {exc}; put the module next to the pipeline "
            "file, on PYTHONPATH, or submit it with --file", where) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PipelineDefinitionError(
                f"cannot resolve {path!r}: module {module_name!r} has no attribute {part!r}", where) from None
    if not callable(obj):
        raise PipelineDefinitionError(f"{path!r} is not callable (got {type(obj).__name__})", where)
    return obj
