"""Limits through the console script: the plan that used to die with a MemoryError after 17 s is
refused by ``validate`` and ``run`` at once, naming the limit and the key that raises it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.cli.test_cli import failed_cleanly, streamlet

HUGE = """\
name: huge
parallelism: 100000
max_parallelism: 100000
sources: {g: {type: datagen, rows: 10, fields: {k: {kind: sequence}}}}
transforms: {c: {input: g, key_by: k, aggregate: {n: count}}}
sinks: {o: {input: c, type: blackhole}}
"""


def test_validate_and_run_refuse_a_plan_past_the_limits_at_once(tmp_path: Path) -> None:
    (tmp_path / "huge.yaml").write_text(HUGE)
    for verb in ("validate", "run"):
        t0 = time.perf_counter()
        message = failed_cleanly(streamlet(verb, "huge.yaml", cwd=tmp_path))
        assert time.perf_counter() - t0 < 10
        assert "max_parallelism is 100000" in message and "pipeline.max-parallelism-limit" in message, message
    # under the cap, the channel count of the hash exchange (1000 x 1000) is the limit
    (tmp_path / "wide.yaml").write_text(HUGE.replace("100000", "1000"))
    message = failed_cleanly(streamlet("validate", "wide.yaml", cwd=tmp_path))
    assert "1000000 channels" in message and "pipeline.max-channels" in message, message
    # raising the key (as the message says) makes it plan
    ok = streamlet("validate", "wide.yaml", "-D", "pipeline.max-channels=2000000", "-D",
                   "pipeline.max-subtasks=2000", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
