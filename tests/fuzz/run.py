"""Run one fuzz target under atheris (libFuzzer): ``python tests/fuzz/run.py TARGET [libFuzzer args]``.

Examples::

    python tests/fuzz/run.py yaml -max_total_time=600 -timeout=2 -rss_limit_mb=1024 corpus/yaml
    python tests/fuzz/run.py rpc tests/fuzz_corpus/rpc/crash-1234   # replay one input

streamlet (and PyYAML, for the yaml target) is instrumented for coverage.  A crash writes the
input to ``crash-<sha1>`` (``-artifact_prefix``); keep it in ``tests/fuzz_corpus/<target>/`` once
the bug is fixed, where ``tests/fuzz/test_fuzz.py`` replays it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["streamlet", "yaml"]):
    from tests.fuzz.targets import TARGETS  # noqa: E402


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: run.py {{{'|'.join(TARGETS)}}} [libFuzzer args]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
