"""Every module imports on its own in a fresh interpreter (no import cycles that only work in one
order), in the style of aiohttp's ``test_circular_imports``; and the light entry points stay
light: ``import streamlet`` and the client-side planning modules never pull in asyncio or the
runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

import streamlet

PACKAGE_DIR = Path(streamlet.__file__).resolve().parent


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__main__":  # importing it runs the CLI
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


MODULES = _modules()


def _import_alone(module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", f"import {module}"],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def import_results() -> dict[str, subprocess.CompletedProcess[str]]:
    # one interpreter per module, two at a time: a fresh interpreter is the point of the test
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(MODULES, pool.map(_import_alone, MODULES)))


def test_modules_were_found() -> None:
    for expected in ("streamlet", "streamlet.cli", "streamlet.keys", "streamlet.api.planner",
                     "streamlet.api.yaml.loader", "streamlet.runtime.minicluster",
                     "streamlet.runtime.taskmanager.task"):
        assert expected in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_in_a_fresh_interpreter(module: str, import_results) -> None:
    proc = import_results[module]
    assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr}"


_LOADED = """
import sys, orjson
{imports}
print(orjson.dumps(sorted(sys.modules)).decode())
"""

HEAVY = ("asyncio", "aiohttp", "uvloop", "rocksdict", "typer")


def _loaded_after(*modules: str) -> set[str]:
    code = _LOADED.format(imports="\n".join(f"import {m}" for m in modules))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(orjson.loads(proc.stdout))


def test_import_streamlet_is_light() -> None:
    loaded = _loaded_after("streamlet")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    assert sorted(m for m in loaded if m.startswith("streamlet")) == ["streamlet", "streamlet.version"]


def test_planning_a_pipeline_never_loads_the_runtime() -> None:
    """The client path (keys, graph, YAML loader, planner) has no asyncio and no runtime, operators
    or connectors: the registry names connectors by import string."""
    loaded = _loaded_after("streamlet.keys", "streamlet.graph.job_graph", "streamlet.graph.execution_graph",
                           "streamlet.graph.render", "streamlet.api.yaml.loader", "streamlet.api.planner",
                           "streamlet.config")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    for layer in ("streamlet.runtime", "streamlet.operators", "streamlet.connectors", "streamlet.rest",
                  "streamlet.rpc"):
        assert not [m for m in loaded if m == layer or m.startswith(layer + ".")], layer


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), "import-linter is not installed (it is in the dev extra: pip install -e '.[dev]')"
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml")], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})


def test_the_layering_contracts_of_pyproject_hold() -> None:
    """import-linter's contracts (pyproject.toml): layers import only downward, the JobManager and
    TaskManager packages meet only in rpc/, graph/ is pure data, nothing imports the test kit."""
    root = Path(__file__).resolve().parent.parent
    proc = _lint_imports(root)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "4 kept, 0 broken" in proc.stdout


def test_a_broken_layer_is_caught(tmp_path: Path) -> None:
    """The contracts really bite: the same tree with the API importing the runtime fails them."""
    import shutil

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "streamlet", tmp_path / "streamlet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "streamlet" / "api" / "sneaky.py"
    bad.write_text("from streamlet.runtime.minicluster import execute\n")
    (tmp_path / "streamlet" / "graph" / "sneaky.py").write_text("import asyncio\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "streamlet.api is not allowed to import streamlet.runtime" in proc.stdout
    assert "streamlet.graph.sneaky -> asyncio" in proc.stdout
