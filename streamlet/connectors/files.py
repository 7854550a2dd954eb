"""``file`` source (text, jsonl, csv; bounded) and ``file`` sink (jsonl, csv; a file per subtask).

Source splits are byte ranges aligned on line starts: one per file when there are at least as
many files as subtasks, otherwise files are cut into pieces so every subtask gets work.  The
enumerator aligns each cut on the next newline, so a reader reads exactly its bytes and never
looks at line offsets.  Reads happen off the event loop in 4 MiB chunks; lines are handed out in
batches of ``pipeline.batch-size``.  Chunks are large because every thread hand-off costs GIL
switches: with 1 MiB chunks and blocks, W2 ran at half speed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from pathlib import Path
from typing import Any, Mapping

import orjson

from streamlet.connectors.base import Param, not_json, validate_params
from streamlet.errors import DecodeError, PipelineDefinitionError, SinkRecordError
from streamlet.serde import dumps_lines

_CHUNK = 1 << 22
_FORMATS = ("text", "jsonl", "csv")
_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}


def _infer_format(paths: list[str]) -> str:
    for p in paths:
        ext = Path(p).suffix.lower()
        if ext in _EXT:
            return _EXT[ext]
    return "text"


def _resolve(base_dir: str, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def list_files(paths: list[str], pattern: str) -> list[str]:
    """Every input file: files as given, directories expanded (sorted, hidden files skipped)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.glob(pattern))
                       if f.is_file() and not f.name.startswith((".", "_")))
        else:
            out.append(str(path))
    return out


class FileSource:
    """Bounded source over one or many files or directories."""

    PARAMS = {
        "path": Param("str|list", "a file, a directory, or a list of them", required=True),
        "format": Param("str", "text, jsonl or csv (default: from the file extension, else text)",
                        None, choices=_FORMATS),
        "pattern": Param("str", "glob of files taken from directories", "*"),
        "delimiter": Param("str", "csv field delimiter", ","),
        "header": Param("bool", "csv: the first line names the fields (records are maps)", True),
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        out = validate_params(params, cls.PARAMS, where, ("type", "parallelism"))
        raw = out["path"] if isinstance(out["path"], list) else [out["path"]]
        paths = []
        for p in raw:
            if not isinstance(p, str) or not p:
                raise PipelineDefinitionError(f"expected a path string, got {p!r}", f"{where}.path")
            rp = _resolve(base_dir, p)
            if not rp.exists():
                raise PipelineDefinitionError(
                    f"input {p!r} does not exist (looked for {str(rp)!r}); relative paths are resolved "
                    "against the pipeline file's directory", f"{where}.path")
            paths.append(str(rp.resolve()))
        files = list_files(paths, out["pattern"])
        if not files:
            raise PipelineDefinitionError(f"no input files match {out['pattern']!r} in {raw!r}", f"{where}.path")
        out["path"] = paths
        out["format"] = out["format"] or _infer_format(files)
        return out

    @classmethod
    def is_bounded(cls, params: Mapping[str, Any]) -> bool:
        return True

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]:
        """Byte-range splits aligned on line starts (blocking I/O: call off the event loop)."""
        files = list_files(params["path"], params["pattern"])
        sizes = {f: os.path.getsize(f) for f in files}
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
                    splits.append({"path": f, "start": start, "end": end, "header": header})
        return splits

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], splits: list[dict[str, Any]], ctx: Any) -> FileReader:
        return FileReader(params, splits, ctx)


class FileReader:
    """Reads the byte ranges of one subtask's splits.

    Complete lines of the current chunk are kept as one bytes object; each ``read`` cuts the
    next run of about ``batch_size`` lines from it.  jsonl runs are decoded by one
    ``orjson.loads`` of the run turned into a JSON array (newlines become commas): one C call
    per batch instead of one per line.  A run that does not decode to one value per line
    (blank or malformed lines) is decoded line by line, skipping blank lines and naming the
    offending line.
    """

    def __init__(self, params: Mapping[str, Any], splits: list[dict[str, Any]], ctx: Any) -> None:
        self._format = params["format"]
        self._delimiter = params["delimiter"]
        self._splits = list(splits)
        self._batch_size = getattr(ctx, "batch_size", 1024)
        self._node_id = getattr(ctx, "node_id", "source")
        self._total = sum(s["end"] - s["start"] for s in splits) or 1
        self._done_bytes = 0
        self._fh: Any = None
        self._remaining = 0
        self._left = b""
        self._header: list[str] | None = None
        self._buf = b""
        self._pos = 0
        self._run_bytes = 64 * self._batch_size
        #: file offsets, to name the line of a decoding error: of the next byte read, of the
        #: buffer's first byte, of the current run's first byte
        self._path = ""
        self._offset = 0
        self._buf_offset = 0
        self._run_offset = 0

    def decode_stage(self) -> tuple[str, dict[str, Any]] | None:
        return None

    def progress(self) -> float | None:
        return min(1.0, self._done_bytes / self._total)

    def _open_next(self) -> bool:
        if not self._splits:
            return False
        s = self._splits.pop(0)
        fh = open(s["path"], "rb")  # noqa: SIM115 - closed in _close_file / close
        fh.seek(s["start"])
        self._fh = fh
        self._path = s["path"]
        self._offset = s["start"]
        self._remaining = s["end"] - s["start"]
        self._header = s.get("header")
        self._left = b""
        return True

    def _read_chunk(self) -> bytes:
        n = min(_CHUNK, self._remaining)
        data = self._fh.read(n) if n > 0 else b""
        self._remaining -= len(data)
        return data

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _set_buffer(self, buf: bytes, offset: int) -> None:
        self._buf, self._pos, self._buf_offset = buf, 0, offset
        sample = buf[:65536]
        lines = sample.count(b"\n") + 1
        self._run_bytes = max(64, len(sample) * self._batch_size // lines)

    def _next_run(self) -> bytes | None:
        buf, start = self._buf, self._pos
        if start >= len(buf):
            return None
        end = buf.find(b"\n", start + self._run_bytes)
        if end < 0:
            end = len(buf)
        self._pos = end + 1
        self._run_offset = self._buf_offset + start
        return buf[start:end]

    def _decode(self, run: bytes) -> list[Any]:
        if self._format == "jsonl":
            return self._decode_jsonl(run)
        try:
            text = run.decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            line_start = run.rfind(b"\n", 0, exc.start) + 1
            line_end = run.find(b"\n", exc.start)
            line = run[line_start:line_end if line_end >= 0 else len(run)]
            raise _BadLine(self._run_offset + line_start, line, f"not UTF-8 ({exc.reason} at byte "
                           f"{exc.start - line_start} of the line)") from None
        if b"\r" in run:
            text = [ln.rstrip("\r") for ln in text]
        if self._format == "text":
            return text
        rows = csv.reader(text, delimiter=self._delimiter)
        if self._header is not None:
            h = self._header
            return [dict(zip(h, row)) for row in rows if row]
        return [row for row in rows if row]

    def _decode_jsonl(self, run: bytes) -> list[Any]:
        try:
            records = orjson.loads(b"[" + run.replace(b"\n", b",") + b"]")
            if len(records) == run.count(b"\n") + 1:
                return records
        except orjson.JSONDecodeError:
            pass
        out = []
        at = self._run_offset
        for line in run.split(b"\n"):
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise _BadLine(at, line, f"not a JSON value ({exc})") from None
            at += len(line) + 1
        return out

    async def _decode_or_name(self, run: bytes) -> list[Any]:
        try:
            return self._decode(run)
        except _BadLine as bad:
            # only on failure: count the lines before it (off the loop: it reads the file)
            number = await asyncio.to_thread(_line_number, self._path, bad.offset)
            raise DecodeError(self._node_id, f"{self._format} at {self._path}:{number}", bad.reason,
                              bad.line.decode("utf-8", "replace"),
                              "fix that line of the input, or read the file with format: text") from None

    async def read(self) -> list[Any] | None:
        while True:
            run = self._next_run()
            if run is not None:
                batch = await self._decode_or_name(run)
                if batch:
                    return batch
                continue
            if self._fh is None:
                if not await asyncio.to_thread(self._open_next):
                    return None
            chunk = await asyncio.to_thread(self._read_chunk)
            self._done_bytes += len(chunk)
            base = self._offset - len(self._left)  # file offset of what is buffered
            self._offset += len(chunk)
            if not chunk:
                last = self._left
                self._left = b""
                await asyncio.to_thread(self._close_file)
                if last:
                    self._set_buffer(last, base)
                continue
            buf = self._left + chunk if self._left else chunk
            cut = buf.rfind(b"\n")
            if cut < 0:
                self._left = buf
                continue
            self._left = buf[cut + 1:]
            self._set_buffer(buf[:cut], base)

    async def close(self) -> None:
        await asyncio.to_thread(self._close_file)


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


class FileSink:
    """Writes records to ``<path>/part-<subtask>.<jsonl|csv>`` (one file per parallel subtask).

    Output is buffered and written off the event loop in 4 MiB blocks; ``finish`` writes the rest.
    Existing part files of the same subtask are replaced.
    """

    PARAMS = {
        "path": Param("str", "output directory (created if missing)", required=True),
        "format": Param("str", "jsonl or csv", "jsonl", choices=("jsonl", "csv")),
        "delimiter": Param("str", "csv field delimiter", ","),
        "header": Param("bool", "csv: write the field names first", True),
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        out = validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))
        out["path"] = str(_resolve(base_dir, out["path"]).resolve())
        if Path(out["path"]).is_file():
            raise PipelineDefinitionError(f"{out['path']!r} is a file; the file sink writes a directory",
                                          f"{where}.path")
        return out

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> FileSink:
        return cls(params, ctx.subtask_index)

    def __init__(self, params: Mapping[str, Any], subtask_index: int) -> None:
        self._format = params["format"]
        self._delimiter = params["delimiter"]
        self._header = params["header"]
        self._file = Path(params["path"]) / f"part-{subtask_index}.{self._format}"
        self._fh: Any = None
        self._buf: list[bytes] = []
        self._size = 0
        self._fields: list[str] | None = None

    def _open(self) -> None:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self._file, "wb")  # noqa: SIM115 - closed in close()

    def _write(self, data: bytes) -> None:
        if self._fh is None:
            self._open()
        self._fh.write(data)

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

    async def write(self, records: list[Any]) -> None:
        if not records:
            return
        if self._format == "jsonl":
            try:
                data = dumps_lines(records)
            except TypeError as exc:  # orjson: a set, bytes, a non-string key, ...
                raise not_json(records, exc) from exc
        else:
            data = self._encode_csv(records)
        self._buf.append(data)
        self._size += len(data)
        if self._size >= _CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        data = b"".join(self._buf)
        self._buf, self._size = [], 0
        await asyncio.to_thread(self._write, data)

    async def finish(self) -> None:
        await self._flush()

    async def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            await asyncio.to_thread(fh.close)


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
