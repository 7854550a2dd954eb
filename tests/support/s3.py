"""A real S3-compatible server for tests and benchmarks: moto's standalone server on 127.0.0.1.

``with moto_server() as endpoint:`` starts ``python -m moto.server`` on a free port (port 0:
the server picks it and prints it), waits for its "Running on" line (no polling, no sleeps),
and stops the process (and its log-draining thread) on exit, also when the body raised.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_RUNNING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")


@contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[str]:
    """The endpoint URL (``http://127.0.0.1:PORT``) of a fresh moto server, stopped on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        # the server logs every request to stderr: keep reading so it never blocks on a full pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            if not found:
                m = _RUNNING.search(line)
                if m:
                    found.append(m.group(1))
                    ready.set()
        ready.set()  # the process ended

    reader = threading.Thread(target=drain, name="moto-stderr", daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout) or not found:
            msg = f"moto server did not start within {timeout}s (exit code {proc.poll()}); is moto[server] installed?"
            raise RuntimeError(msg)
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=10)
