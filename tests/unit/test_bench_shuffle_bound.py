"""scripts/bench_shuffle_bound.py keeps running against the pieces it borrows (the file reader's
decode, the hash partitioner, the remote channel's codec): a small run finishes and prints its bound."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_shuffle_bound.py"


def test_small_run_prints_a_bound() -> None:
    res = subprocess.run([sys.executable, str(SCRIPT), "--records", "20000", "--rounds", "2"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert len(re.findall(r"^round \d: one process .* bound \d+\.\d\dx$", res.stdout, re.M)) == 2, res.stdout
    m = re.search(r"median (\d+\.\d\d)x", res.stdout)
    assert m is not None and float(m.group(1)) > 0, res.stdout
