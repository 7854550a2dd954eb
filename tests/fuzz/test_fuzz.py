"""Fuzzing in the suite: the corpus of inputs that found bugs is replayed (always), and each
target runs a few seconds under atheris when it is installed (``pip install -e '.[dev]'``).

Longer runs: ``scripts/fuzz.sh``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "fuzz_corpus"
SEEDS = HERE / "seeds"


def _inputs() -> list[tuple[str, Path]]:
    return [(t, f) for t in TARGETS for d in (CORPUS / t, SEEDS / t) if d.is_dir()
            for f in sorted(d.iterdir()) if f.is_file()]


@pytest.mark.parametrize("target, path", _inputs(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_corpus_input_keeps_the_contract(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


def test_every_target_has_a_regression_corpus_directory() -> None:
    assert {d.name for d in CORPUS.iterdir() if d.is_dir()} >= set(TARGETS)


_ATHERIS = importlib.util.find_spec("atheris") is not None


@pytest.mark.skipif(not _ATHERIS, reason="atheris is not installed (it is in the dev extra: pip install -e '.[dev]')")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_bounded_fuzz_run(target: str, tmp_path: Path) -> None:
    """A short coverage-guided run: no crash, no input over 2 s, RSS under 1 GiB."""
    work = tmp_path / "corpus"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(HERE / "run.py"), target, "-max_total_time=4", "-timeout=2", "-rss_limit_mb=1024",
         f"-artifact_prefix={tmp_path}/crash-", str(work), str(SEEDS / target), str(CORPUS / target)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, (crashes, proc.stderr[-4000:])
    assert "Done" in proc.stderr, proc.stderr[-2000:]
