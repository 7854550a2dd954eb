"""The chaos script, bounded: 10 SIGKILLs (TaskManagers, and every 4th the JobManager) during one
job; nothing lost, nothing duplicated (scripts/chaos.py checks the output against the input)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ten_kills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "chaos.py"), "--kills", "10", "--rows", "400000",
                        "--interval", "1.2", "--work", str(tmp_path / "chaos")],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kills survived: 10 (taskmanagers 8, jobmanager 2)" in r.stdout, r.stdout + r.stderr
    assert "lost: 0, duplicated: 0" in r.stdout
