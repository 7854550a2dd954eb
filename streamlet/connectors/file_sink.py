"""``file`` sink: jsonl or csv part files, exactly-once by two-phase commit (Flink's FileSink).

A part file goes through three stages, all in the sink's directory; only the last is visible
(readers, :func:`streamlet.connectors.files.list_files` and the ``file`` source skip names
starting with ``.``):

1. **in progress** ``.part-<subtask>-<token>-<k>.<ext>.inprogress``: written by one writer
   instance (``token`` is random per instance, so a restarted attempt never appends to the
   file of a dead one); rolled (closed, a new one started) by ``rolling: {size, interval}``;
2. **pending** ``.part-<subtask>-<n>-<seq>.<ext>.pending``: at checkpoint ``n``
   (:meth:`FileWriter.prepare_commit`) every file written since checkpoint ``n - 1`` is flushed,
   synced, closed and renamed; the committables ``{"pending": ..., "final": ...}`` (names
   relative to the directory) go into the checkpoint;
3. **committed** ``part-<subtask>-<n>-<seq>.<ext>``: once ``n`` is complete
   (:meth:`FileWriter.commit`), each pending file is renamed to its final name.  A commit is
   idempotent: a pending file already renamed (its final file exists) is skipped, so committing
   twice, or again after a restore, is harmless.

Names are unique per subtask, checkpoint and part, so a job restored from checkpoint ``n``
(whose next checkpoints are numbered above ``n``) never overwrites committed output.

At the end of input :meth:`FileWriter.finish` commits everything: files of checkpoints not yet
complete, and the rest under the next checkpoint id (``part-<subtask>-1-<seq>`` in a job without
checkpoints).  Exactly-once thus covers everything up to the last completed checkpoint; the
output after it is committed when the input ends (a failure after that point, before the job
finished, replays it: Flink closes this gap with a final checkpoint, FLIP-147).  A job
that starts fresh (not from a checkpoint or savepoint) **replaces** the output of an earlier
run: each subtask first deletes the part files (visible and hidden) of its subtask index, and
subtask 0 those of indices at or above the parallelism.  A restored job deletes only in-progress
leftovers of its own subtask index, which no checkpoint can refer to.

Output is buffered and written off the event loop in 4 MiB blocks.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import uuid
from pathlib import Path
from typing import Any, Mapping

from streamlet.config import parse_duration
from streamlet.connectors.base import Param, SinkWriterBase, not_json, validate_params
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.files import resolve_path
from streamlet.errors import ConfigError, PipelineDefinitionError, SinkRecordError
from streamlet.serde import dumps_lines

_BLOCK = 1 << 22
#: any file of the sink's naming scheme; group 1 is the subtask index
_PART = re.compile(r"^\.?part-(\d+)[-.].*(jsonl|csv)(\.inprogress|\.pending)?$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3,
               "gib": 1024**3}


def _parse_size(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise PipelineDefinitionError(f"expected a size like '128MB', '64KiB' or a number of bytes, got {value!r}",
                                      where)
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower() if m.group(2) else None])


def _parse_rolling(value: Any, where: str) -> dict[str, Any] | None:
    """``rolling:`` normalized to ``{"size": bytes | None, "interval": "<seconds>s" | None}``;
    parsing the result again gives the same result (the JobManager validates submitted graphs)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PipelineDefinitionError(f"expected a map like {{size: 128MB, interval: 10min}}, got {value!r}", where)
    spec = validate_params(value, FileSink.ROLLING, where)
    out: dict[str, Any] = {"size": None, "interval": None}
    if spec["size"] is not None:
        out["size"] = _parse_size(spec["size"], f"{where}.size")
    if spec["interval"] is not None:
        try:
            seconds = parse_duration(spec["interval"], f"{where}.interval")
        except ConfigError as exc:
            raise PipelineDefinitionError(f"expected a duration like '10min' or '30s', got {spec['interval']!r}",
                                          f"{where}.interval") from exc
        if seconds <= 0:
            raise PipelineDefinitionError(f"expected a positive duration, got {spec['interval']!r}",
                                          f"{where}.interval")
        out["interval"] = f"{seconds!r}s"
    return out


class FileSink:
    """The ``file`` sink connector (see the module docstring for files, names and guarantees)."""

    GUARANTEE = "exactly_once"
    PARAMS = {
        "path": Param("str", "output directory (created if missing)", required=True),
        "format": Param("str", "jsonl or csv", "jsonl", choices=("jsonl", "csv")),
        "delimiter": Param("str", "csv field delimiter", ","),
        "header": Param("bool", "csv: write the field names first (in every file)", True),
        "rolling": Param("any", "start a new part file after {size: 128MB, interval: 10min} (either or both)"),
    }
    #: keys of ``rolling:``
    ROLLING = {
        "size": Param("any", "roll when a part file reaches this size ('128MB', '1GiB', or bytes)"),
        "interval": Param("any", "roll a part file this long after it was started ('10min', '30s')"),
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        """Check the keys; make ``path`` absolute; parse ``rolling``."""
        out = validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))
        out["path"] = str(resolve_path(base_dir, out["path"]).resolve())
        if Path(out["path"]).is_file():
            raise PipelineDefinitionError(f"{out['path']!r} is a file; the file sink writes a directory",
                                          f"{where}.path")
        out["rolling"] = _parse_rolling(out["rolling"], f"{where}.rolling")
        return out

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> FileWriter:
        """The writer of one sink subtask (``ctx``: its RuntimeContext)."""
        return FileWriter(params, ctx)


class FileWriter(SinkWriterBase):
    """Writes one sink subtask's part files (a :class:`~streamlet.connectors.base.SinkWriter`).

    Writer state (:meth:`snapshot_state`): ``{"subtask": i, "checkpoint": n}``, the last
    checkpoint prepared; committables (:meth:`prepare_commit`): ``[{"pending": name, "final":
    name}, ...]``.  :meth:`restore_state` takes one state or a list of them (after a rescale).
    """

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        self._dir = Path(params["path"])
        self._format: str = params["format"]
        self._delimiter: str = params["delimiter"]
        self._header: bool = params["header"]
        rolling = params.get("rolling") or {}
        self._roll_size: int | None = rolling.get("size")
        self._roll_interval: float | None = (parse_duration(rolling["interval"]) if rolling.get("interval")
                                             else None)
        self._sub: int = ctx.subtask_index
        self._parallelism: int = ctx.parallelism
        self._clock = ctx.clock
        #: the subtask starts from a checkpoint: earlier output is kept, not replaced
        self._restored: bool = bool(getattr(ctx, "restored", False))
        self._token = uuid.uuid4().hex[:12]
        self._count = 0  # in-progress files started by this writer
        # the in-progress file being written (None: none yet), its size, and when its first
        # record arrived (None: no record since the last roll)
        self._fh: Any = None
        self._current: str | None = None
        self._file_bytes = 0
        self._part_started: float | None = None
        #: rolled in-progress files not yet prepared
        self._closed: list[str] = []
        #: committables prepared by this writer and not yet committed, by checkpoint
        self._uncommitted: dict[int, list[dict[str, str]]] = {}
        self._checkpoint = 0
        self._buf: list[bytes] = []
        self._size = 0
        self._fields: list[str] | None = None
        self._header_line = b""

    # -- life cycle ----------------------------------------------------------------------------

    def restore_state(self, state: Any) -> None:
        """Take back the state(s) of a checkpoint; earlier committed output is then kept."""
        states = state if isinstance(state, list) else [state]
        self._restored = True
        for s in states:
            if isinstance(s, dict):
                self._checkpoint = max(self._checkpoint, int(s.get("checkpoint", 0)))

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """``{"subtask": i, "checkpoint": n}`` (the names to come depend only on checkpoint ids)."""
        return {"subtask": self._sub, "checkpoint": self._checkpoint}

    async def open(self) -> None:
        """Create the directory; delete the files of an earlier run (fresh start) or the
        in-progress leftovers of a dead attempt (restore)."""
        await asyncio.to_thread(self._clean)

    def _clean(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self._dir):
            m = _PART.match(entry.name)
            if m is None or not entry.is_file():
                continue
            sub = int(m.group(1))
            mine = sub == self._sub or (self._sub == 0 and sub >= self._parallelism)
            if not mine:
                continue
            if not self._restored or m.group(3) == ".inprogress":
                os.unlink(entry.path)

    async def write(self, records: list[Any]) -> None:
        """Encode a batch; full 4 MiB blocks go to the in-progress file in a thread."""
        if not records:
            return
        if self._format == "jsonl":
            try:
                data = dumps_lines(records)
            except TypeError as exc:  # orjson: a set, bytes, a non-string key, ...
                raise not_json(records, exc) from exc
        else:
            data = self._encode_csv(records)
        if self._part_started is None:
            self._part_started = self._clock.monotonic()
        self._buf.append(data)
        self._size += len(data)
        if self._roll_size is not None and self._file_bytes + self._size >= self._roll_size:
            await self._flush()
            await self._roll()
        elif self._size >= _BLOCK:
            await self._flush()
        if self._roll_interval is not None and self._part_started is not None and \
                self._clock.monotonic() - self._part_started >= self._roll_interval:
            await self._flush()
            await self._roll()

    async def prepare_commit(self, checkpoint_id: int) -> list[Any]:
        """Flush, sync and close every file written since the last checkpoint; rename them
        pending; return their committables (empty when nothing was written)."""
        return await self._prepare(checkpoint_id)

    async def commit(self, committables: list[Any]) -> None:
        """Rename pending files to their final names; idempotent (see the module docstring)."""
        await self._commit_all(committables, sync=True)

    async def _commit_all(self, committables: list[Any], sync: bool) -> None:
        if committables:
            await asyncio.to_thread(self._commit, list(committables), sync)
        done = {c["pending"] for c in committables}
        for n in list(self._uncommitted):
            left = [c for c in self._uncommitted[n] if c["pending"] not in done]
            if left:
                self._uncommitted[n] = left
            else:
                del self._uncommitted[n]

    async def finish(self) -> None:
        """End of input: commit everything, the files of checkpoints not yet complete included
        (a finished task gets no more notifications) and the rest under the next checkpoint id."""
        tail = await self._prepare(self._checkpoint + 1, sync=False)
        earlier = [c for n in sorted(self._uncommitted) for c in self._uncommitted[n] if c not in tail]
        await self._commit_all(earlier + tail, sync=False)
        self._uncommitted.clear()

    async def close(self) -> None:
        """Close the open file (on failure or cancellation its data stays hidden)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            await asyncio.to_thread(fh.close)

    # -- files ---------------------------------------------------------------------------------

    async def _flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf, self._size = [], 0
        if self._current is None:
            self._current = f".part-{self._sub}-{self._token}-{self._count}.{self._format}.inprogress"
            self._count += 1
            self._file_bytes = 0
            data = self._header_line + data
        self._file_bytes += len(data)
        self._fh = await asyncio.to_thread(self._write, self._fh, self._dir / self._current, data)

    @staticmethod
    def _write(fh: Any, path: Path, data: bytes) -> Any:
        if fh is None:
            fh = open(path, "wb")  # noqa: SIM115 - closed by _roll or close
        fh.write(data)
        return fh

    async def _roll(self) -> None:
        """Close the in-progress file (it stays in progress until the next prepare)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            await asyncio.to_thread(fh.close)
        if self._current is not None:
            self._closed.append(self._current)
            self._current = None
        self._part_started = None

    async def _prepare(self, checkpoint_id: int, sync: bool = True) -> list[dict[str, str]]:
        """Make the files written since the last prepare pending; ``sync``: durable first (a
        checkpoint must survive a machine crash; the end of a job without checkpoints need not,
        as a rerun replaces its output)."""
        await self._flush()
        await self._roll()
        files, self._closed = self._closed, []
        self._checkpoint = max(self._checkpoint, checkpoint_id)
        if not files:
            return []
        base = f"part-{self._sub}-{checkpoint_id}"
        ext = self._format
        committables = [{"pending": f".{base}-{seq}.{ext}.pending", "final": f"{base}-{seq}.{ext}"}
                        for seq in range(len(files))]
        await asyncio.to_thread(self._rename_pending, files, committables, sync)
        self._uncommitted.setdefault(checkpoint_id, []).extend(committables)
        return committables

    def _rename_pending(self, files: list[str], committables: list[dict[str, str]], sync: bool) -> None:
        for name, c in zip(files, committables):
            if sync:
                fd = os.open(self._dir / name, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(self._dir / name, self._dir / c["pending"])
        if sync:
            self._sync_dir()

    def _commit(self, committables: list[dict[str, str]], sync: bool) -> None:
        for c in committables:
            pending, final = self._dir / c["pending"], self._dir / c["final"]
            if pending.exists():
                if final.exists():
                    msg = (f"file sink {str(self._dir)!r}: committing {c['pending']!r} would replace the "
                           f"committed file {c['final']!r} (a job restored from an older checkpoint or savepoint "
                           "into a directory that has later output); move that output away or write to a new "
                           "directory")
                    raise ConnectorError(msg)
                os.rename(pending, final)
            elif not final.exists():
                msg = (f"file sink {str(self._dir)!r}: the pending file {c['pending']!r} of a checkpoint is gone "
                       f"and {c['final']!r} was never committed: its records are lost; restore from a later "
                       "checkpoint, or rerun the job without restoring")
                raise ConnectorError(msg)
        if sync:
            self._sync_dir()

    def _sync_dir(self) -> None:
        # renames are durable only once the directory is synced
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- csv -----------------------------------------------------------------------------------

    def _encode_csv(self, records: list[Any]) -> bytes:
        out = io.StringIO()
        w = csv.writer(out, delimiter=self._delimiter, lineterminator="\n")
        if self._fields is None:
            first = records[0]
            if isinstance(first, dict):
                _check_csv_record(first, None)
            self._fields = list(first) if isinstance(first, dict) else []
            if self._header and self._fields:
                w.writerow(self._fields)
                self._header_line = out.getvalue().encode()
                out.seek(0)
                out.truncate()
        f = self._fields
        columns = set(f)
        for r in records:
            if isinstance(r, dict):
                if r.keys() != columns:
                    _check_csv_record(r, columns)
                w.writerow([r.get(k) for k in f])
            else:
                w.writerow(r if isinstance(r, (list, tuple)) else [r])
        return out.getvalue().encode()


def _check_csv_record(r: dict[Any, Any], columns: set[str] | None) -> None:
    """Refuse a map record a csv file cannot hold: a key that is not a string, or (``columns``
    given) a field the header does not have."""
    for k in r:
        if type(k) is not str:
            raise SinkRecordError(r, f"its key {k!r} is not a string, and csv columns are named by strings",
                                  "make the keys strings, e.g. map: \"{str(k): v for k, v in r.items()}\", or write "
                                  "format: jsonl")
    if columns is not None:
        extra = [k for k in r if k not in columns]
        if extra:
            raise SinkRecordError(r, f"it has fields {extra!r} that the csv header (the first record's fields) has not",
                                  "give every record the same fields, or write format: jsonl")
