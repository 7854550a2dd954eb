"""``file`` source: text, jsonl and csv files, bounded, or watching directories for new files
(the sink is in :mod:`.file_sink`).

Source splits are byte ranges aligned on line starts: one per file when there are at least as
many files as subtasks, otherwise files are cut into pieces so every subtask gets work.  The
enumerator aligns each cut on the next newline, so a reader reads exactly its bytes and never
looks at line offsets.  Reads happen off the event loop in 4 MiB chunks; lines are handed out in
batches of ``pipeline.batch-size``.  Chunks are large because every thread hand-off costs GIL
switches: with 1 MiB chunks and blocks, W2 ran at half speed.

**Watching** (``watch: 1s``, Flink's ``FileSource.monitorContinuously``): the source is
unbounded.  The files present at the start are split as above; then the JobMaster's source
coordinator lists the directories every interval (:meth:`FileSource.discover_splits`) and hands
each file it has not seen, whole, as a new split to a subtask.  A file is known by its path and
read once, up to the size it had when it was found: write files elsewhere (or under a name
starting with ``.`` or ``_``) and rename them into the directory, as with Flink.  Readers keep
every split they were given in their state (finished ones ``done``), so a restore re-reads no
file and the coordinator, which takes the restored states as what it knows, finds none again.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import orjson

from streamlet.connectors.base import END_OF_INPUT, Param, validate_params
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.pacing import paced_reader, positive_rate
from streamlet.errors import DecodeError, PipelineDefinitionError
from streamlet.time.durations import duration_ms

_CHUNK = 1 << 22
_FORMATS = ("text", "jsonl", "csv")
_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}


def _infer_format(paths: list[str]) -> str:
    """The format of the first path with a known extension (a glob pattern counts), else text."""
    for p in paths:
        ext = Path(p).suffix.lower()
        if ext in _EXT:
            return _EXT[ext]
    return "text"


def resolve_path(base_dir: str, p: str) -> Path:
    """``p`` (``~`` expanded) as is when absolute, else relative to ``base_dir`` (the pipeline file's directory)."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def list_files(paths: list[str], pattern: str) -> list[str]:
    """Every input file: files as given, directories expanded (sorted, hidden files skipped)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.glob(pattern))
                       if not f.name.startswith((".", "_")) and f.is_file())
        else:
            out.append(str(path))
    return out


def _file_splits(files: list[str], sizes: Mapping[str, int], params: Mapping[str, Any],
                 parallelism: int) -> list[dict[str, Any]]:
    """Byte-range splits of ``files`` aligned on line starts (blocking I/O)."""
    total = sum(sizes.values()) or 1
    splits: list[dict[str, Any]] = []
    for f in files:
        header = None
        first_line_end = 0
        if params["format"] == "csv" and params["header"]:
            with open(f, "rb") as fh:
                line = fh.readline()
            first_line_end = len(line)
            header = next(csv.reader([line.decode("utf-8-sig").rstrip("\r\n")],
                                     delimiter=params["delimiter"]), [])
        pieces = 1 if len(files) >= parallelism else max(1, round(parallelism * sizes[f] / total))
        bounds = [first_line_end]
        with open(f, "rb") as fh:
            for k in range(1, pieces):
                target = max(bounds[-1], sizes[f] * k // pieces)
                if target > 0:
                    fh.seek(target - 1)
                    fh.readline()
                pos = fh.tell()
                if pos > bounds[-1] and pos < sizes[f]:
                    bounds.append(pos)
        bounds.append(sizes[f])
        for start, end in zip(bounds, bounds[1:]):
            if end > start:
                splits.append({"id": f"{f}:{start}-{end}", "path": f, "start": start, "end": end,
                               "header": header})
    return splits


class FileSource:
    """Bounded source over one or many files or directories."""

    PARAMS = {
        "path": Param("str|list", "a file, a directory, or a list of them", required=True),
        "format": Param("str", "text, jsonl or csv (default: from the file extension, else text)",
                        None, choices=_FORMATS),
        "pattern": Param("str", "glob of files taken from directories", "*"),
        "delimiter": Param("str", "csv field delimiter", ","),
        "header": Param("bool", "csv: the first line names the fields (records are maps)", True),
        "rate": Param("number", "records per second for the whole source, divided over its subtasks (omit: as "
                                "fast as possible)"),
        "watch": Param("any", "watch the directories for new files, listing them this often (e.g. 1s): the "
                              "source is unbounded (omit: bounded)"),
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        out = validate_params(params, cls.PARAMS, where, ("type", "parallelism"))
        positive_rate(out["rate"], f"{where}.rate")
        if out["watch"] is not None:
            out["watch"] = duration_ms(out["watch"], f"{where}.watch", allow_zero=False)
        raw = out["path"] if isinstance(out["path"], list) else [out["path"]]
        paths = []
        for p in raw:
            if not isinstance(p, str) or not p:
                raise PipelineDefinitionError(f"expected a path string, got {p!r}", f"{where}.path")
            rp = resolve_path(base_dir, p)
            try:
                found = rp.exists()
                if found:
                    paths.append(str(rp.resolve()))
            except OSError as exc:  # e.g. a name longer than the file system allows (ENAMETOOLONG)
                raise PipelineDefinitionError(f"input {p!r} cannot be looked up: {exc.strerror or exc}; "
                                              "fix the path", f"{where}.path") from None
            if not found:
                raise PipelineDefinitionError(
                    f"input {p!r} does not exist (looked for {str(rp)!r}); relative paths are resolved "
                    "against the pipeline file's directory", f"{where}.path")
        try:
            files = list_files(paths, out["pattern"])
        except (ValueError, NotImplementedError, IndexError) as exc:  # what pathlib's glob says of bad patterns
            raise PipelineDefinitionError(f"pattern {out['pattern']!r} is not a usable glob ({exc or type(exc).__name__}); "
                                          "use a relative pattern such as '*.jsonl' or '**/*.csv'",
                                          f"{where}.pattern") from None
        if out["watch"] is not None:
            if not any(Path(p).is_dir() for p in paths):
                raise PipelineDefinitionError(f"watch needs a directory to watch, got only files {raw!r}; name the "
                                              "directory new files arrive in", f"{where}.path")
        elif not files:
            raise PipelineDefinitionError(f"no input files match {out['pattern']!r} in {raw!r}", f"{where}.path")
        out["path"] = paths
        out["format"] = out["format"] or _infer_format(files or [out["pattern"]])
        return out

    @classmethod
    def is_bounded(cls, params: Mapping[str, Any]) -> bool:
        """Bounded unless ``watch`` is set."""
        return params.get("watch") is None

    @classmethod
    def discovery_interval(cls, params: Mapping[str, Any]) -> float | None:
        """Seconds between two listings of the watched directories (None: not watching)."""
        watch = params.get("watch")
        return watch / 1000 if watch else None

    @classmethod
    def discover_splits(cls, params: Mapping[str, Any], parallelism: int,
                        known: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One whole-file split per file not among ``known`` (split states or splits assigned so
        far), in name order; empty files wait until they have content.  Blocking (lists directories)."""
        seen = {s["path"] for s in known if "path" in s}
        out: list[dict[str, Any]] = []
        for f in list_files(params["path"], params["pattern"]):
            if f in seen:
                continue
            try:
                size = os.path.getsize(f)
                if size == 0:
                    continue
                splits = _file_splits([f], {f: size}, params, 1)
            except FileNotFoundError:  # removed since the listing
                continue
            # a csv file holding only its header still counts as found (a split with nothing to read)
            out.extend(splits or [{"id": f"{f}:{size}-{size}", "path": f, "start": size, "end": size,
                                   "header": None}])
        return out

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]:
        """Byte-range splits aligned on line starts (blocking I/O: call off the event loop)."""
        files = list_files(params["path"], params["pattern"])
        return _file_splits(files, {f: os.path.getsize(f) for f in files}, params, parallelism)

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], ctx: Any) -> Any:
        """A :class:`FileReader`, paced when ``rate`` is set."""
        return paced_reader(FileReader, params, ctx)


class _FileSplit:
    """Read position in one byte range: ``offset`` is where the next line not yet returned starts."""

    __slots__ = ("id", "path", "start", "end", "header", "offset")

    def __init__(self, split: Mapping[str, Any]) -> None:
        self.id: str = split["id"]
        self.path: str = split["path"]
        self.start: int = split["start"]
        self.end: int = split["end"]
        self.header: list[str] | None = split.get("header")
        self.offset: int = min(split.get("offset", self.start), self.end)

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "start": self.start, "end": self.end, "header": self.header,
                "offset": self.offset, "done": self.offset >= self.end}


def _read_job(fh: Any, path: str, offset: int, n: int, close_after: bool, stale: Any) -> tuple[Any, bytes]:
    """Runs in a thread: read ``n`` bytes of ``path`` at ``offset`` (opening it when ``fh`` is None).

    Closes ``stale`` (the file of a finished split) first, and ``fh`` after the last bytes of its
    split or at the end of the file; returns the file handle still open (or None) and the bytes.
    """
    if stale is not None:
        stale.close()
    if fh is None:
        fh = open(path, "rb")  # noqa: SIM115 - closed by a later job or FileReader.close
        fh.seek(offset)
    data = fh.read(n)
    if close_after or len(data) < n:
        fh.close()
        fh = None
    return fh, data


def jsonl_run(run: bytes) -> list[Any] | None:
    """The records of a run of JSON lines, by one ``orjson.loads`` of the run as an array; None
    when that does not give one value per line (blank or malformed lines: decode line by line)."""
    try:
        records = orjson.loads(b"".join((b"[", run.replace(b"\n", b","), b"]")))
    except orjson.JSONDecodeError:
        return None
    return records if len(records) == run.count(b"\n") + 1 else None


class FileReader:
    """Reads the byte ranges of one subtask's splits (a :class:`~streamlet.connectors.base.SourceReader`).

    Splits are read one after the other.  A thread reads the current split in chunks of
    :attr:`chunk_size` bytes, one chunk ahead of decoding: :meth:`poll` starts a read when the
    buffer runs dry and takes its result once done, and :meth:`wait_available` awaits it.

    Complete lines of the current chunk are kept as one bytes object; each ``poll`` cuts the
    next run of about ``batch_size`` lines from it.  jsonl runs are decoded by one
    ``orjson.loads`` of the run turned into a JSON array (newlines become commas): one C call
    per batch instead of one per line.  A run that does not decode to one value per line
    (blank or malformed lines) is decoded line by line, skipping blank lines and naming the
    offending line.

    Split state: the split (``{"id", "path", "start", "end", "header"}``) plus ``"offset"``, the
    byte where the next line not yet returned starts, and ``"done"``; a reader given it reads
    ``[offset, end)``.
    """

    #: bytes per read; large because every thread hand-off costs GIL switches
    chunk_size = _CHUNK

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        self._format = params["format"]
        #: watching: no end of input; an idle reader waits for splits from the coordinator
        self._watching = params.get("watch") is not None
        self._more = asyncio.Event()
        self._delimiter = params["delimiter"]
        self._batch_size: int = ctx.batch_size
        self._node_id: str = ctx.node_id
        self._splits: list[_FileSplit] = []
        self._queue: deque[_FileSplit] = deque()
        self._total = 0
        self._finished_bytes = 0
        # the split being read: its file (touched only by the read thread while a read runs),
        # the offset of its next byte to read, and the read in flight
        self._cur: _FileSplit | None = None
        self._fh: Any = None
        self._stale: Any = None
        self._read_off = 0
        self._requested = 0
        self._eof = False
        self._pending: asyncio.Future[tuple[Any, bytes]] | None = None
        # the current chunk, as the read thread returned it (never copied: each 4 MiB copy took
        # ~0.4 ms of the task's loop): ``_buf[_pos:_buf_end]`` are its complete lines not yet returned, each
        # ending in a newline; ``_buf`` starts at file offset ``_buf_off``.  ``_head`` is the
        # partial line the previous chunk ended with, which the first run of this one begins
        # with; ``_left`` is the partial line this chunk ends with (the next chunk's head)
        self._left = b""
        self._head = b""
        self._buf = b""
        self._buf_off = 0
        self._buf_end = 0
        self._pos = 0
        self._run_bytes = 64 * self._batch_size
        #: a line that did not decode, its file, and the count of the lines before it (a thread)
        self._bad: tuple[_BadLine, str, asyncio.Future[int]] | None = None
        #: the id of the split the last batch came from
        self.current_split: str | None = None

    async def open(self) -> None:
        """Files are opened by the read thread, split by split."""
        return None

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        """Queue byte ranges: fresh splits or states from :meth:`snapshot_state` (any subtask's)."""
        for s in splits:
            sp = _FileSplit(s)
            self._splits.append(sp)
            self._total += sp.end - sp.start
            if sp.offset < sp.end:
                self._queue.append(sp)
            else:
                self._finished_bytes += sp.end - sp.start
        self._more.set()

    def snapshot_state(self, checkpoint_id: int) -> list[dict[str, Any]]:
        """Every split with the offset of its next unread line (finished ones ``done: true``)."""
        return [sp.state() for sp in self._splits]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Nothing to confirm."""
        return None

    def decode_stage(self) -> tuple[str, dict[str, Any]] | None:
        return None

    def progress(self) -> float | None:
        """Fraction of the held byte ranges returned (None while watching: there is no end)."""
        if self._watching:
            return None
        if not self._total:
            return 1.0
        cur = self._cur
        done = self._finished_bytes + (cur.offset - cur.start if cur is not None else 0)
        return min(1.0, done / self._total)

    def poll(self) -> list[Any] | None:
        """The next run of lines of the current split, ``[]`` while a read is under way, or
        ``END_OF_INPUT`` once every split is read (watching: ``[]`` until new splits come)."""
        while True:
            buf, start, stop = self._buf, self._pos, self._buf_end
            if start < stop:
                end = buf.find(b"\n", start + self._run_bytes, stop)
                if end < 0:
                    end = stop - 1
                self._pos = end + 1
                cur = self._cur
                assert cur is not None
                cur.offset = min(self._buf_off + end + 1, cur.end)
                run, at = buf[start:end], self._buf_off + start
                if self._head:
                    run, at, self._head = self._head + run, at - len(self._head), b""
                try:
                    batch = self._decode(run, at)
                except _BadLine as bad:
                    self._fail(bad)
                    return []
                if batch:
                    self.current_split = cur.id
                    return batch
                continue
            step = self._advance()
            if step is not True:
                return step

    def active_splits(self) -> list[str]:
        """The split being read (splits are read one after the other): a finished split leaves
        the source's watermark, and one still queued does not hold it back."""
        cur = self._cur
        return [] if cur is None else [cur.id]

    async def wait_available(self) -> None:
        """Wait for the read in flight (cancel-safe: cancelling the wait leaves the read running)."""
        fut = self._bad[2] if self._bad is not None else self._pending
        if fut is not None:
            if not fut.done():
                await asyncio.wait((fut,))
        elif self._watching and self._cur is None and not self._queue:
            # every split read: the next ones come with add_splits (the task's mailbox wakes it too)
            self._more.clear()
            await self._more.wait()

    def _advance(self) -> bool | list[Any] | None:
        """Refill the buffer: True when refilled, ``[]`` when a read is under way, None at the end."""
        if self._bad is not None:
            return self._raise_bad()
        fut = self._pending
        if fut is not None:
            if not fut.done():
                return []
            self._pending = None
            try:
                self._fh, chunk = fut.result()
            except OSError as exc:
                cur = self._cur
                assert cur is not None
                msg = (f"source {self._node_id!r}: cannot read {cur.path!r}: {exc.strerror or exc}; "
                       "check that the file exists and is readable")
                raise ConnectorError(msg) from exc
            self._take_chunk(chunk)
            return True
        cur = self._cur
        if cur is not None:
            if not self._eof:
                self._start_read()
                return []
            cur.offset = cur.end
            self._finished_bytes += cur.end - cur.start
            self._stale, self._fh, self._cur = self._fh, None, None
        if not self._queue:
            return [] if self._watching else END_OF_INPUT
        cur = self._cur = self._queue.popleft()
        self._read_off = cur.offset
        self._left, self._eof = b"", False
        self._set_buffer(b"", 0, 0, b"")
        self._start_read()
        return []

    def _start_read(self) -> None:
        cur = self._cur
        assert cur is not None
        n = self._requested = min(self.chunk_size, cur.end - self._read_off)
        fh, stale = self._fh, self._stale
        self._fh = self._stale = None
        self._pending = asyncio.get_running_loop().run_in_executor(
            None, _read_job, fh, cur.path, self._read_off, n, self._read_off + n >= cur.end, stale)

    def _take_chunk(self, chunk: bytes) -> None:
        cur = self._cur
        assert cur is not None
        chunk_off = self._read_off
        self._read_off += len(chunk)
        head, self._left = self._left, b""
        if len(chunk) < self._requested or self._read_off >= cur.end:
            # the split's last bytes (a range ends at a line start or at the end of the file)
            self._eof = True
            if not chunk:
                chunk, chunk_off, head = head, chunk_off - len(head), b""
            if chunk and not chunk.endswith(b"\n"):
                chunk += b"\n"
            self._set_buffer(chunk, chunk_off, len(chunk), head)
            return
        self._start_read()  # read ahead while this chunk is decoded
        cut = chunk.rfind(b"\n")
        if cut < 0:  # a line longer than the chunk
            self._left = head + chunk
            self._set_buffer(b"", chunk_off, 0, b"")
        else:
            self._left = chunk[cut + 1:]
            self._set_buffer(chunk, chunk_off, cut + 1, head)

    def _set_buffer(self, buf: bytes, offset: int, end: int, head: bytes) -> None:
        """Lines ``buf[:end]`` (each ending in a newline) at file offset ``offset``, after ``head``."""
        self._buf, self._buf_off, self._buf_end, self._pos, self._head = buf, offset, end, 0, head
        if end:
            sample = min(end, 65536)
            lines = buf.count(b"\n", 0, sample) + 1
            self._run_bytes = max(64, sample * self._batch_size // lines)

    def _decode(self, run: bytes, offset: int) -> list[Any]:
        """Records of ``run`` (lines starting at file offset ``offset``); raises :class:`_BadLine`."""
        if self._format == "jsonl":
            return self._decode_jsonl(run, offset)
        try:
            text = run.decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            line_start = run.rfind(b"\n", 0, exc.start) + 1
            line_end = run.find(b"\n", exc.start)
            line = run[line_start:line_end if line_end >= 0 else len(run)]
            raise _BadLine(offset + line_start, line, f"not UTF-8 ({exc.reason} at byte "
                           f"{exc.start - line_start} of the line)") from None
        if b"\r" in run:
            text = [ln.rstrip("\r") for ln in text]
        if self._format == "text":
            return text
        rows = csv.reader(text, delimiter=self._delimiter)
        header = self._cur.header if self._cur is not None else None
        if header is not None:
            return [dict(zip(header, row)) for row in rows if row]
        return [row for row in rows if row]

    def _decode_jsonl(self, run: bytes, offset: int) -> list[Any]:
        records = jsonl_run(run)
        if records is not None:
            return records
        out = []
        at = offset
        for line in run.split(b"\n"):
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise _BadLine(at, line, f"not a JSON value ({exc})") from None
            at += len(line) + 1
        return out

    def _fail(self, bad: _BadLine) -> None:
        """A line does not decode: count the lines before it in a thread (it reads the file), so
        the next :meth:`poll` after :meth:`wait_available` raises a DecodeError naming the line."""
        cur = self._cur
        assert cur is not None
        self._set_buffer(b"", 0, 0, b"")
        self._bad = (bad, cur.path, asyncio.get_running_loop().run_in_executor(None, _line_number, cur.path,
                                                                                 bad.offset))

    def _raise_bad(self) -> list[Any]:
        assert self._bad is not None
        bad, path, fut = self._bad
        if not fut.done():
            return []
        number = fut.result()
        raise DecodeError(self._node_id, f"{self._format} at {path}:{number}", bad.reason,
                          bad.line.decode("utf-8", "replace"),
                          "fix that line of the input, or read the file with format: text")

    async def close(self) -> None:
        """Wait for a read in flight, then close the open file (off the event loop)."""
        if self._bad is not None:
            await asyncio.wait((self._bad[2],))
        fut, self._pending = self._pending, None
        if fut is not None:
            await asyncio.wait((fut,))
            if not fut.cancelled() and fut.exception() is None:
                self._fh = fut.result()[0] or self._fh
        handles = [h for h in (self._fh, self._stale) if h is not None]
        self._fh = self._stale = None
        if handles:
            await asyncio.to_thread(lambda: [h.close() for h in handles])


class _BadLine(Exception):
    """A line that does not decode, at ``offset`` bytes into its file (internal to the reader)."""

    def __init__(self, offset: int, line: bytes, reason: str) -> None:
        self.offset = offset
        self.line = line
        self.reason = reason


def _line_number(path: str, offset: int) -> int:
    """The 1-based number of the line starting at byte ``offset`` of ``path`` (blocking)."""
    count = 0
    with open(path, "rb") as fh:
        while offset > 0:
            block = fh.read(min(offset, _CHUNK))
            if not block:
                break
            count += block.count(b"\n")
            offset -= len(block)
    return count + 1
