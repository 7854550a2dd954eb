"""``postgres`` sink: rows into a table, upserted by key or appended, exactly-once without XA.

YAML::

    sinks:
      db:
        input: counts
        type: postgres
        dsn: postgresql://app@127.0.0.1:5432/analytics   # a URI; ${PG_DSN} keeps secrets out
        table: bids_per_auction                           # or schema.table
        key: [auction, window_start]                      # upsert: the conflict target
        mode: upsert                                      # upsert (default) | append
        create_table: true                                # from columns: or the first rows
        columns: {auction: bigint, window_start: bigint, window_end: bigint, num: bigint}

Record fields are columns: the first record's fields are the columns written (each must be a
column of the table; a later record without one writes NULL, a later record with a field the
first had not is an error).  Maps and lists go into json/jsonb columns, epoch milliseconds into
timestamp columns.

Guarantees (``guarantee:``):

* ``exactly_once`` (default).  Between two checkpoints a writer buffers its rows (upsert: the
  last row per key) and COPYs them, in parts of ``batch_rows``, into its own staging table
  (``_streamlet_stage_<table>_<hash>_<subtask>``, beside the target, rows tagged with the
  transaction ``<token>-<seq>``), each part in a committed transaction of its own.  At the
  barrier of checkpoint ``n`` (:meth:`PostgresWriter.prepare_commit`) the rest is staged and the
  transaction becomes the committable.  When ``n`` completes, ONE database transaction merges
  it (``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``, or a plain insert for append),
  deletes it from the staging table and records ``n`` for the sink subtask in the progress
  table (``progress_table``, columns sink, subtask, checkpoint, rows, committed_at).  A merge
  whose subtask already has a checkpoint ``>= n`` recorded is skipped, so committing again
  (after a restore) is a no-op.  Merges run in order on a connection of their own, so a
  checkpoint's completion does not stall the task; the writer state of a checkpoint lists
  every transaction prepared and not yet merged, and a restored writer merges those (skipping
  what the progress table has) before it writes, then empties its staging table of what the
  failed attempt left.  A job started fresh (not restored) clears its rows of the progress
  table and its staging tables; the target table is kept.
* ``at_least_once``: rows are written in batches of ``batch_rows`` (or after
  ``flush_interval``), and everything before a barrier is written before the checkpoint; a
  restore writes the rows since that checkpoint again (upserts make that invisible).
* ``none``: as ``at_least_once`` without the flush at barriers.

At the end of input everything is written (exactly-once: merged as one more transaction).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from operator import itemgetter
from typing import Any, Callable, Mapping

from streamlet.connectors.base import Param, SinkWriterBase, validate_params
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.postgres import schema as sql
from streamlet.connectors.postgres.schema import TableName, quote_ident
from streamlet.errors import PipelineDefinitionError, SinkRecordError
from streamlet.time.durations import duration_ms

logger = logging.getLogger(__name__)

GUARANTEES = ("exactly_once", "at_least_once", "none")
_RESERVED = ("_txn", "_part")


def _node_of(where: str) -> str:
    return where.rsplit("sinks.", 1)[-1] if "sinks." in where else where


class PostgresSink:
    """Writes a PostgreSQL table (``type: postgres``); see the module docstring."""

    PARAMS = {
        "dsn": Param("str", "connection URI, postgresql://user[:password]@host:port/database", required=True),
        "table": Param("str", "the table written: name or schema.name", required=True),
        "key": Param("str|list", "key column(s): the conflict target of upserts (a unique index or primary key)"),
        "mode": Param("str", "upsert (insert or update by key) or append (insert every row)", "upsert",
                      choices=("upsert", "append")),
        "guarantee": Param("str", "exactly_once (merged with the checkpoints), at_least_once or none",
                           "exactly_once", choices=GUARANTEES),
        "create_table": Param("bool", "create the table when it does not exist (from columns:, else the first rows)",
                              False),
        "columns": Param("map", "declared schema for create_table, column -> SQL type ({auction: bigint})"),
        "batch_rows": Param("int", "rows per COPY (exactly_once: into the staging table)", 50_000),
        "flush_interval": Param("any", "at_least_once/none: the longest a row waits to be written", "1s"),
        "progress_table": Param("str", "table of the last checkpoint merged per sink subtask (exactly_once); in "
                                       "the target's schema unless qualified", "streamlet_sink_progress"),
        "sink_id": Param("str", "this sink's name in the progress table (default <job name>/<node id>)"),
    }
    GUARANTEE = "exactly_once"

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        """Check and normalize the keys (the database is contacted when the writer opens)."""
        out = validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))
        why = sql.check_dsn(out["dsn"])
        if why is not None:
            raise PipelineDefinitionError(f"bad dsn {sql.describe_dsn(out['dsn'])!r}: {why}", f"{where}.dsn")
        if not out["table"] or out["table"].endswith("."):
            raise PipelineDefinitionError(f"expected a table name, got {out['table']!r}", f"{where}.table")
        key = out["key"]
        keys = [] if key is None else key if isinstance(key, list) else [key]
        if not all(isinstance(k, str) and k for k in keys) or (key is not None and not keys):
            raise PipelineDefinitionError(f"expected a column name or a list of them, got {key!r}", f"{where}.key")
        out["key"] = keys
        if out["mode"] == "upsert" and not keys:
            raise PipelineDefinitionError("mode: upsert needs key: (the column(s) of a unique index); or write "
                                          "mode: append", f"{where}.key")
        columns = out["columns"]
        if columns is not None:
            bad = {c: t for c, t in columns.items() if not isinstance(t, str) or not t.strip()}
            if bad or not columns:
                raise PipelineDefinitionError(f"expected column -> SQL type (like {{auction: bigint}}), got "
                                              f"{columns!r}", f"{where}.columns")
            missing = [k for k in keys if k not in columns]
            if missing:
                raise PipelineDefinitionError(f"key column(s) {missing!r} are not in columns: {list(columns)!r}",
                                              f"{where}.columns")
        reserved = [c for c in [*keys, *(columns or {})] if c in _RESERVED]
        if reserved:
            raise PipelineDefinitionError(f"column name(s) {reserved!r} are reserved by the staging tables",
                                          f"{where}.columns")
        if out["batch_rows"] < 1:
            raise PipelineDefinitionError(f"expected batch_rows >= 1, got {out['batch_rows']!r}",
                                          f"{where}.batch_rows")
        out["flush_interval"] = duration_ms(out["flush_interval"], f"{where}.flush_interval", allow_zero=False)
        out["node_id"] = _node_of(where)
        return out

    @classmethod
    def guarantee(cls, params: Mapping[str, Any]) -> str:
        """What this sink gives a job with these params."""
        return params["guarantee"]

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> PostgresWriter:
        return PostgresWriter(params, ctx)


class PostgresWriter(SinkWriterBase):
    """The writer of one sink subtask (a :class:`~streamlet.connectors.base.SinkWriter`).

    Committables (exactly_once): ``{"sink", "subtask", "checkpoint", "txn", "schema", "stage",
    "columns", "parts", "rows"}``, everything a merge needs, so any writer (a restored one, after
    a rescale too) can merge it.  Writer state: ``{"subtask", "parallelism", "pending": [...]}``
    (the committables prepared and not yet merged).
    """

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        self._params = params
        self._what = f"sink {params['node_id']!r}"
        self._dsn: str = params["dsn"]
        self._address = sql.describe_dsn(self._dsn)
        self._table = TableName.parse(params["table"])
        progress = TableName.parse(params["progress_table"])
        self._progress = progress if progress.schema else self._table.sibling(progress.name)
        self._key: list[str] = list(params["key"])
        self._upsert = params["mode"] == "upsert"
        self._guarantee: str = params["guarantee"]
        self._exactly_once = self._guarantee == "exactly_once"
        self._batch_rows: int = params["batch_rows"]
        self._interval = params["flush_interval"] / 1000
        self._sub: int = ctx.subtask_index
        self._parallelism: int = ctx.parallelism
        self._clock = ctx.clock
        self._restored = bool(getattr(ctx, "restored", False))
        self._restored_states: list[dict[str, Any]] = []
        job = getattr(ctx, "job_name", None) or "job"
        self._sink_id: str = params["sink_id"] or f"{job}/{params['node_id']}"
        self._stage = sql.stage_table(self._table, self._sink_id, self._sub)
        self._token = uuid.uuid4().hex[:12]
        self._seq = 0
        self._conn: Any = None
        self._commit_conn: Any = None
        #: the table's columns (name -> type), None until known (create_table from rows: first flush)
        self._columns: dict[str, str] | None = None
        self._fields: list[str] | None = None
        self._getter: Callable[[Any], tuple[Any, ...]] | None = None
        self._key_of: Callable[[tuple[Any, ...]], Any] | None = None
        self._convert: list[tuple[int, Callable[[Any], Any]]] = []
        self._buf_map: dict[Any, tuple[Any, ...]] = {}
        self._buf_list: list[tuple[Any, ...]] = []
        self._first_at: float | None = None
        self._parts = 0
        self._txn_rows = 0
        self._last_checkpoint = 0
        self._uncommitted: list[dict[str, Any]] = []
        self._queued: set[str] = set()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._error: BaseException | None = None

    # -- state ------------------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """The transactions prepared and not yet merged (exactly_once; None otherwise)."""
        if not self._exactly_once:
            return None
        return {"subtask": self._sub, "parallelism": self._parallelism, "pending": list(self._uncommitted)}

    def restore_state(self, state: Any) -> None:
        """Take back the state(s) of a checkpoint: their transactions are merged at :meth:`open`."""
        self._restored = True
        states = state if isinstance(state, list) else [state]
        self._restored_states = [s for s in states if isinstance(s, dict)]

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect; check (or create) the table; exactly_once: the progress and staging tables, and
        after a restore the merges of the restored transactions."""
        self._conn = await sql.connect(self._dsn, self._what)
        try:
            await self._open_table()
            if self._exactly_once:
                self._commit_conn = await sql.connect(self._dsn, self._what)
                await self._open_progress()
                self._tasks.append(asyncio.create_task(self._committer(), name=f"{self._what} committer"))
            elif self._interval:
                self._tasks.append(asyncio.create_task(self._flusher(), name=f"{self._what} flusher"))
        except BaseException:
            await self.close()
            raise

    async def _open_table(self) -> None:
        conn = self._conn
        columns = await sql.table_columns(conn, self._table)
        declared: dict[str, str] | None = self._params["columns"]
        if columns is None:
            if not self._params["create_table"]:
                raise ConnectorError(f"{self._what}: table {str(self._table)!r} does not exist in {self._address}; "
                                     "create it, or set create_table: true (columns from columns: or the first rows)")
            if declared is None:
                return  # created from the first rows (_ensure_table)
            await self._create(declared)
            columns = await sql.table_columns(conn, self._table)
            assert columns is not None
        elif declared is not None:
            missing = [c for c in declared if c not in columns]
            if missing:
                raise ConnectorError(f"{self._what}: table {str(self._table)!r} in {self._address} has no column(s) "
                                     f"{missing!r} of columns: (its columns: {list(columns)!r}); alter the table or "
                                     "change columns:")
        await self._check_columns(columns)

    async def _check_columns(self, columns: dict[str, str]) -> None:
        missing = [k for k in self._key if k not in columns]
        if missing:
            raise ConnectorError(f"{self._what}: table {str(self._table)!r} in {self._address} has no key column(s) "
                                 f"{missing!r} (its columns: {list(columns)!r}); change key: or the table")
        reserved = [c for c in columns if c in _RESERVED]
        if reserved:
            raise ConnectorError(f"{self._what}: table {str(self._table)!r} has column(s) {reserved!r}, which the "
                                 "staging tables reserve; rename them")
        if self._upsert and not await sql.has_unique_index(self._conn, self._table, self._key):
            cols = ", ".join(map(quote_ident, self._key))
            raise ConnectorError(f"{self._what}: mode: upsert needs a unique index or primary key on {self._key!r} of "
                                 f"table {str(self._table)!r} (none found in {self._address}); create one "
                                 f"(CREATE UNIQUE INDEX ON {self._table.sql} ({cols})) or write mode: append")
        self._columns = columns
        if self._exactly_once:
            await self._conn.execute(sql.stage_sql(self._stage, columns))

    async def _create(self, columns: dict[str, str]) -> None:
        """Create the table (one creator at a time: subtasks may race)."""
        ddl = sql.create_table_sql(self._table, columns, self._key if self._upsert else None)
        try:
            async with self._conn.transaction():
                await self._conn.execute("SELECT pg_advisory_xact_lock($1)", sql.lock_key(str(self._table)))
                await self._conn.execute(ddl)
        except Exception as exc:
            raise self._db_error(exc, f"creating table {str(self._table)!r} ({ddl})") from None
        logger.info("%s: created table %s in %s", self._what, self._table, self._address)

    async def _open_progress(self) -> None:
        conn = self._commit_conn
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", sql.lock_key(str(self._progress)))
            await conn.execute(sql.progress_sql(self._progress))
        if not self._restored:
            await self._fresh_start()
            return
        pending = sorted((c for s in self._restored_states for c in s.get("pending", [])),
                         key=lambda c: (c["checkpoint"], c["subtask"]))
        for c in pending:
            await self._merge(c)
        rescaled = not (len(self._restored_states) == 1 and self._restored_states[0].get("subtask") == self._sub
                        and self._restored_states[0].get("parallelism") == self._parallelism)
        if not rescaled and self._columns is not None:
            # what the failed attempt staged after the checkpoint is never merged: drop it
            await self._conn.execute(f"TRUNCATE {self._stage.sql}")

    async def _fresh_start(self) -> None:
        """Forget an earlier run of this sink: its progress rows and staging tables."""
        await self._commit_conn.execute(
            f"DELETE FROM {self._progress.sql} WHERE sink = $1 AND (subtask = $2 OR ($2 = 0 AND subtask >= $3))",
            self._sink_id, self._sub, self._parallelism)
        if self._columns is not None:
            await self._conn.execute(f"TRUNCATE {self._stage.sql}")
        if self._sub == 0:
            prefix = sql.stage_prefix(self._table, self._sink_id)
            names = await self._conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = coalesce($1, current_schema()) "
                "AND starts_with(tablename, $2)", self._table.schema, prefix)
            for (name,) in names:
                index = name[len(prefix):]
                if index.isdigit() and int(index) >= self._parallelism:
                    await self._conn.execute(f"DROP TABLE IF EXISTS {self._table.sibling(name).sql}")

    async def close(self) -> None:
        """Stop the background tasks and close the connections; buffered rows are dropped (a
        restore replays them), staged transactions stay for a restore to merge."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for name in ("_conn", "_commit_conn"):
            conn = getattr(self, name)
            setattr(self, name, None)
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except Exception:  # noqa: BLE001 - a broken connection cannot close politely
                    conn.terminate()

    # -- writing ----------------------------------------------------------------------------

    async def write(self, records: list[Any]) -> None:
        """Buffer a batch (upsert: the last row per key); write a full buffer."""
        self._raise_background()
        if not records:
            return
        if self._fields is None:
            self._init_fields(records[0])
        rows = self._rows(records)
        if self._first_at is None:
            self._first_at = self._clock.monotonic()
        if self._upsert:
            key_of = self._key_of
            assert key_of is not None
            buf = self._buf_map
            buf.update(zip(map(key_of, rows), rows))
            size = len(buf)
        else:
            self._buf_list.extend(rows)
            size = len(self._buf_list)
        if size >= self._batch_rows or (not self._exactly_once and self._clock.monotonic() - self._first_at
                                        >= self._interval):
            await self._flush()

    def _init_fields(self, first: Any) -> None:
        if not isinstance(first, dict):
            raise SinkRecordError(first, "the postgres sink writes maps of column -> value",
                                  "turn the record into a map, e.g. map: \"{'value': r}\"")
        fields = list(first)
        if self._columns is not None:
            unknown = [f for f in fields if f not in self._columns]
            if unknown:
                raise ConnectorError(f"{self._what}: the records have field(s) {unknown!r} that table "
                                     f"{str(self._table)!r} in {self._address} has not (its columns: "
                                     f"{list(self._columns)!r}); rename or drop them in a map step before the sink, "
                                     "or add the columns")
        missing = [k for k in self._key if k not in fields]
        if missing:
            raise SinkRecordError(first, f"it has no key field(s) {missing!r}", "give every record the key fields")
        self._fields = fields
        get = itemgetter(*fields)
        self._getter = get if len(fields) > 1 else (lambda r: (get(r),))
        positions = [fields.index(k) for k in self._key]
        if positions:
            self._key_of = itemgetter(*positions)
        if self._columns is not None:
            self._convert = sql.converters([self._columns[f] for f in fields])

    def _rows(self, records: list[Any]) -> list[tuple[Any, ...]]:
        """Records as tuples in field order; the fast path when every record has exactly the fields."""
        get = self._getter
        n = len(self._fields or ())
        try:
            rows = [get(r) for r in records if len(r) == n]
            if len(rows) == len(records):
                return rows
        except (KeyError, TypeError):
            pass
        return [self._row(r) for r in records]

    def _row(self, r: Any) -> tuple[Any, ...]:
        fields = self._fields
        assert fields is not None
        if not isinstance(r, dict):
            raise SinkRecordError(r, "the postgres sink writes maps of column -> value",
                                  "turn the record into a map before the sink")
        extra = [k for k in r if k not in fields]
        if extra:
            raise SinkRecordError(r, f"it has field(s) {extra!r} that the first record had not (the columns "
                                     f"written are {fields!r})", "give every record the same fields")
        missing = [k for k in self._key if r.get(k) is None]
        if missing:
            raise SinkRecordError(r, f"its key field(s) {missing!r} are missing or null", "give every record its key")
        try:
            hash(tuple(r[k] for k in self._key))
        except TypeError:
            raise SinkRecordError(r, "its key is not a scalar", "key by numbers or strings") from None
        return tuple(r.get(f) for f in fields)

    async def _flush(self) -> None:
        """Write the buffer: exactly_once into the staging table as one part of the open
        transaction; otherwise into the table."""
        async with self._lock:
            rows = list(self._buf_map.values()) if self._upsert else self._buf_list
            self._buf_map, self._buf_list, self._first_at = {}, [], None
            if not rows:
                return
            if self._columns is None:
                await self._create_from(rows)
            if self._convert:
                rows = self._converted(rows)
            try:
                if self._exactly_once:
                    await self._stage_rows(rows)
                else:
                    await self._write_direct(rows)
            except (SinkRecordError, ConnectorError):
                raise
            except Exception as exc:
                raise self._db_error(exc, f"writing {len(rows)} row(s)") from None

    async def _create_from(self, rows: list[tuple[Any, ...]]) -> None:
        assert self._fields is not None
        types = sql.infer_types(self._fields, rows)
        await self._create(types)
        columns = await sql.table_columns(self._conn, self._table)
        assert columns is not None
        await self._check_columns(columns)
        self._init_fields(dict.fromkeys(self._fields))

    def _converted(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        out = []
        conv = self._convert
        for r in rows:
            row = list(r)
            for i, f in conv:
                row[i] = f(row[i])
            out.append(row)
        return out

    async def _stage_rows(self, rows: list[Any]) -> None:
        conn = self._conn
        async with conn.transaction():
            await conn.execute("SELECT set_config('streamlet.txn', $1, true), set_config('streamlet.part', $2, true)",
                               self._txn_id(), str(self._parts))
            await conn.copy_records_to_table(self._stage.name, schema_name=self._stage.schema, columns=self._fields,
                                             records=rows)
        self._parts += 1
        self._txn_rows += len(rows)

    async def _write_direct(self, rows: list[Any]) -> None:
        conn = self._conn
        assert self._fields is not None
        if not self._upsert:
            await conn.copy_records_to_table(self._table.name, schema_name=self._table.schema, columns=self._fields,
                                             records=rows)
            return
        tmp = TableName(None, "_streamlet_upsert")
        async with conn.transaction():
            await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {tmp.sql} (LIKE {self._table.sql}) "
                               "ON COMMIT DELETE ROWS")
            await conn.copy_records_to_table(tmp.name, columns=self._fields, records=rows)
            cols = ", ".join(map(quote_ident, self._fields))
            await conn.execute(f"INSERT INTO {self._table.sql} ({cols}) SELECT {cols} FROM pg_temp.{tmp.sql} "
                               f"{sql.on_conflict(self._fields, self._key)}")

    def _txn_id(self) -> str:
        return f"{self._token}-{self._seq}"

    async def _flusher(self) -> None:
        """at_least_once/none: write rows that waited ``flush_interval`` while no batch came."""
        try:
            while True:
                await self._clock.sleep(self._interval / 2)
                if self._first_at is not None and self._clock.monotonic() - self._first_at >= self._interval:
                    await self._flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - raised by the next write
            self._fail(exc)

    # -- checkpoints ------------------------------------------------------------------------

    async def prepare_commit(self, checkpoint_id: int) -> list[Any]:
        """Stage the rest; exactly_once: the transaction since the last checkpoint is the committable."""
        self._raise_background()
        self._last_checkpoint = max(self._last_checkpoint, checkpoint_id)
        if self._guarantee == "none":
            return []
        await self._flush()
        if not self._exactly_once or self._parts == 0:
            return []
        c = {"sink": self._sink_id, "subtask": self._sub, "checkpoint": checkpoint_id, "txn": self._txn_id(),
             "schema": self._stage.schema, "stage": self._stage.name, "columns": list(self._fields or ()),
             "parts": self._parts, "rows": self._txn_rows}
        self._seq += 1
        self._parts = self._txn_rows = 0
        self._uncommitted.append(c)
        return [c]

    async def commit(self, committables: list[Any]) -> None:
        """Queue the merges of ``committables`` (in order, on the merge connection); idempotent."""
        self._raise_background()
        for c in committables:
            if c["txn"] not in self._queued:
                self._queued.add(c["txn"])
                await self._queue.put(c)

    async def _committer(self) -> None:
        try:
            while True:
                c = await self._queue.get()
                try:
                    await self._merge(c)
                finally:
                    self._queue.task_done()
                self._queued.discard(c["txn"])
                self._uncommitted = [u for u in self._uncommitted if u["txn"] != c["txn"]]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - raised by the next call of the task
            self._fail(exc)  # commit() and finish() raise it from now on, so nothing waits on the queue

    async def _merge(self, c: Mapping[str, Any]) -> bool:
        """One transaction: skip (already recorded) or merge + delete staged + record; True if merged."""
        conn = self._commit_conn
        stage = TableName(c["schema"], c["stage"])
        try:
            async with conn.transaction():
                done = await conn.fetchval(f"SELECT checkpoint FROM {self._progress.sql} WHERE sink = $1 AND "
                                           "subtask = $2 FOR UPDATE", c["sink"], c["subtask"])
                if done is not None and done >= c["checkpoint"]:
                    await conn.execute(f"DELETE FROM {stage.sql} WHERE _txn = $1", c["txn"])
                    logger.info("%s: checkpoint %d of subtask %d was merged before", self._what, c["checkpoint"],
                                c["subtask"])
                    return False
                await conn.execute(sql.merge_sql(self._table, stage, c["columns"], self._key,
                                             "upsert" if self._upsert else "append", c["parts"]), c["txn"])
                await conn.execute(f"DELETE FROM {stage.sql} WHERE _txn = $1", c["txn"])
                await conn.execute(
                    f"INSERT INTO {self._progress.sql} (sink, subtask, checkpoint, rows, committed_at) "
                    "VALUES ($1, $2, $3, $4, now()) ON CONFLICT (sink, subtask) DO UPDATE SET "
                    "checkpoint = EXCLUDED.checkpoint, rows = EXCLUDED.rows, committed_at = EXCLUDED.committed_at",
                    c["sink"], c["subtask"], c["checkpoint"], c["rows"])
        except Exception as exc:
            raise self._db_error(exc, f"merging checkpoint {c['checkpoint']} (transaction {c['txn']})") from None
        return True

    async def finish(self) -> None:
        """End of input: write everything; exactly_once: merge the pending transactions and the rest."""
        if not self._exactly_once:
            await self._flush()
            self._raise_background()
            return
        await self.prepare_commit(self._last_checkpoint + 1)
        await self.commit(list(self._uncommitted))
        await self._join()
        self._raise_background()

    async def _join(self) -> None:
        join = asyncio.ensure_future(self._queue.join())
        try:
            while not join.done():
                await asyncio.wait((join,), timeout=0.5)
                if self._error is not None:
                    break
        finally:
            if not join.done():
                join.cancel()
                await asyncio.wait((join,))

    # -- errors -----------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            logger.error("%s: %s", self._what, exc)

    def _raise_background(self) -> None:
        if self._error is not None:
            raise self._error

    def _db_error(self, exc: BaseException, action: str) -> ConnectorError:
        if isinstance(exc, ConnectorError):
            return exc
        detail = getattr(exc, "detail", None)
        hint = ""
        if (isinstance(exc, (TypeError, ValueError)) or type(exc).__name__ == "DataError") and self._columns is not None and self._fields is not None:
            hint = (f"; the columns written and their types: "
                    f"{ {f: self._columns.get(f) for f in self._fields}!r}: convert the values in a map step, or "
                    "declare other types")
        return ConnectorError(f"{self._what}: {action} into {str(self._table)!r} at {self._address} failed: "
                              f"{type(exc).__name__}: {exc}{f' ({detail})' if detail else ''}{hint}")
