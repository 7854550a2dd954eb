"""Projection on remote channels: send only the record fields the consumer reads.

An edge whose target head operator reads only some fields of its input records (a keyed aggregate
or window over named fields: ``OpSpec.fields_read``) may carry just those to another TaskManager;
the operator's output is the same, and a record that lacks one of them (or is not a dict) is sent
whole, so it fails at the consumer exactly as it would unprojected.  Local channels pass records
as they are (nothing is encoded there).

Projecting builds a dict per record, which costs more than encoding and decoding a small field
it drops: measured per record, dropping 1 of 3 int fields costs 220 ns and saves 85 ns; keeping
``auction`` of a Nexmark bid (7 fields, 240 bytes) costs 120 ns and saves 890 ns.  So a batch is
projected only when its first record has at least ``MIN_DROPPED`` fields more than are kept.
"""

from __future__ import annotations

from typing import Any, Callable

from streamlet.operators.codegen import CodeBuilder
from streamlet.runtime.taskmanager.network.elements import RecordBatch

MIN_DROPPED = 3

Projection = Callable[[RecordBatch], RecordBatch]


def projection(fields: tuple[str, ...]) -> Projection:
    """The batch with each record reduced to ``fields`` (in that order), or ``batch`` itself when
    that would not pay or a record does not have them all."""
    b = CodeBuilder("projection")
    b.add(0, "def _project(batch):")
    b.add(1, "return [{" + ", ".join(f"{f!r}: r[{f!r}]" for f in fields) + "} for r in batch]")
    fn = b.compile("_project")
    wide = len(fields) + MIN_DROPPED

    def project(batch: RecordBatch) -> RecordBatch:
        records = batch.records
        first = records[0] if records else None
        if type(first) is not dict or len(first) < wide:
            return batch
        try:
            return RecordBatch(fn(records), batch.timestamps)
        except (KeyError, TypeError):  # sent whole: the consumer raises as it would unprojected
            return batch
    return project
