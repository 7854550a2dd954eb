"""``rest`` never imports ``runtime`` (it reaches the JobManager through its gateway Protocol)."""

from __future__ import annotations

import subprocess
import sys


def test_rest_and_rpc_do_not_import_the_runtime() -> None:
    code = ("import sys, streamlet.rest.app, streamlet.rpc.client, streamlet.rpc.server; "
            "bad = sorted(m for m in sys.modules if m.startswith('streamlet.runtime')); "
            "assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
