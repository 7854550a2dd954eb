"""Fixtures shared by the whole suite.

* every test gets ``sys.path`` and the user modules it imported from its temporary directory
  rolled back, so user-function modules written by one test never leak into the next (the
  planner and tasks put a pipeline's directory on ``sys.path``, as a TaskManager does);
* ``register_connector`` makes a test-only connector class usable from YAML (``type: NAME``);
* ``udf_module`` writes a user-function module next to a pipeline under a unique name.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest

from streamlet.api import registry

pytest_plugins = ["tests.support.services"]

_module_names = itertools.count()


@pytest.fixture(autouse=True)
def _isolate_imports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    path_before = list(sys.path)
    modules_before = set(sys.modules)
    yield
    sys.path[:] = path_before
    base = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - modules_before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith(base):
            del sys.modules[name]


@pytest.fixture
def register_connector() -> Iterator[Callable[[str, str, str], None]]:
    """``register_connector("sink", "slow", "tests.support.connectors:SlowSink")``; undone after the test."""
    added: list[tuple[dict[str, str], str, str | None]] = []

    def register(section: str, name: str, path: str) -> None:
        table = registry.SINKS if section == "sink" else registry.SOURCES
        added.append((table, name, table.get(name)))
        table[name] = path

    yield register
    for table, name, previous in reversed(added):
        if previous is None:
            table.pop(name, None)
        else:
            table[name] = previous


@pytest.fixture
def scripted(register_connector: Callable[[str, str, str], None]) -> Iterator[None]:
    """The ``scripted`` test source and the ``collect`` test sink (tests.support.connectors)
    registered, their SCRIPT and COLLECTED reset before and after."""
    from tests.support.connectors import COLLECTED, SCRIPT

    register_connector("source", "scripted", "tests.support.connectors:ScriptedSource")
    register_connector("sink", "collect", "tests.support.connectors:CollectSink")
    SCRIPT.reset()
    COLLECTED.reset()
    yield
    SCRIPT.reset()
    COLLECTED.reset()


@pytest.fixture
def slow_sink(register_connector: Callable[[str, str, str], None]) -> Iterator[None]:
    """The ``slow`` test sink (tests.support.connectors.SlowSink) registered, its stats reset."""
    from tests.support.connectors import SINK_STATS

    register_connector("sink", "slow", "tests.support.connectors:SlowSink")
    SINK_STATS.reset()
    yield
    SINK_STATS.reset()


@pytest.fixture
def udf_module(tmp_path: Path) -> Callable[[str], str]:
    """Write Python source as a uniquely named module in ``tmp_path``; return the module name.

    Unique names matter: ``sys.modules`` caches a module by name for the whole process.
    """

    def write(source: str) -> str:
        name = f"udfs_{next(_module_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write
