"""Run the ``streamlet`` CLI with the test connectors registered (``slow`` sink, ``endless`` source).

Used by e2e tests whose pipelines need a sink that is slow on purpose; the JobManager (which
validates pipelines) and the TaskManagers (which run them) must all know the names.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamlet.api import registry  # noqa: E402
from streamlet.cli import app  # noqa: E402

registry.SINKS["slow"] = "tests.support.connectors:SlowSink"
registry.SOURCES["endless"] = "tests.support.connectors:EndlessSource"

if __name__ == "__main__":
    app(prog_name="streamlet")
