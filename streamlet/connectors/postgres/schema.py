"""PostgreSQL helpers of the ``postgres`` sink: DSNs, connections, identifiers, tables.

Everything here is about the database, not about checkpoints: :mod:`.sink` decides what is
written when.  Errors name the address (``host:port/database``) and the user, never the
password (:func:`describe_dsn`).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import orjson

from streamlet.connectors.errors import ConnectorError

#: how long to wait for the database when connecting
CONNECT_TIMEOUT = 10.0

#: SQL types given to a field by ``create_table`` without ``columns:`` (the first non-null value)
_INFERRED = ((bool, "boolean"), (int, "bigint"), (float, "double precision"), (str, "text"),
             (dict, "jsonb"), (list, "jsonb"))


def describe_dsn(dsn: str) -> str:
    """``user@host:port/database`` of a DSN, without the password (for messages and logs)."""
    try:
        u = urlsplit(dsn)
        host = u.hostname or "localhost"
        port = u.port or 5432
        db = unquote(u.path.lstrip("/")) or (u.username or "postgres")
        user = f"{unquote(u.username)}@" if u.username else ""
    except ValueError:
        return "<an unparsable dsn>"
    return f"{user}{host}:{port}/{db}"


def check_dsn(dsn: str) -> str | None:
    """Why ``dsn`` is not a PostgreSQL connection URI, or None."""
    try:
        u = urlsplit(dsn)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"it is not a URI ({exc})"
    if u.scheme not in ("postgres", "postgresql"):
        return "it must be a URI like postgresql://user@host:5432/database"
    return None


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (``"a""b"`` for ``a"b``)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableName:
    """A table, optionally in a schema; ``sql`` is its quoted form."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        """``"table"`` or ``"schema.table"`` (identifiers as written, case kept)."""
        schema, _, name = text.rpartition(".")
        return cls(schema or None, name)

    @property
    def sql(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}" if self.schema else quote_ident(self.name)

    def sibling(self, name: str) -> TableName:
        """A table of the same schema."""
        return TableName(self.schema, name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def stage_table(target: TableName, sink_id: str, subtask: int) -> TableName:
    """The staging table of one sink subtask (beside the target; at most 63 characters)."""
    digest = hashlib.sha1(f"{target}|{sink_id}".encode()).hexdigest()[:8]
    return target.sibling(f"_streamlet_stage_{target.name[:24]}_{digest}_{subtask}")


def stage_prefix(target: TableName, sink_id: str) -> str:
    """What the names of a sink's staging tables start with."""
    return stage_table(target, sink_id, 0).name[:-1]


async def connect(dsn: str, what: str) -> Any:
    """An asyncpg connection; a failure raises :class:`ConnectorError` naming the address and why."""
    import asyncpg

    where = describe_dsn(dsn)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT + 1):
            return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        reason = f"no answer within {CONNECT_TIMEOUT:g}s"
    except OSError as exc:
        errno = exc.errno or getattr(exc.__cause__ or exc.__context__, "errno", None)
        reason = os.strerror(errno) if errno else str(exc) or type(exc).__name__
    except asyncpg.PostgresError as exc:
        reason = str(exc)
    except (ValueError, TypeError) as exc:  # asyncpg's DSN parser
        reason = f"bad dsn ({type(exc).__name__})"
    raise ConnectorError(f"{what}: cannot connect to PostgreSQL at {where}: {reason}; check that the database "
                         "runs, and the dsn (host, port, database, user, password)")


async def table_columns(conn: Any, table: TableName) -> dict[str, str] | None:
    """The table's columns in order, name -> type (``format_type``), or None when it does not exist."""
    oid = await conn.fetchval("SELECT to_regclass($1)::oid", table.sql)
    if oid is None:
        return None
    rows = await conn.fetch("SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
                            "WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum", oid)
    return {r["attname"]: r["type"] for r in rows}


async def has_unique_index(conn: Any, table: TableName, columns: list[str]) -> bool:
    """True when a unique index (or primary key) covers exactly ``columns`` (ON CONFLICT needs one)."""
    rows = await conn.fetch(
        "SELECT array_agg(a.attname::text) AS cols FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL "
        "GROUP BY i.indexrelid", table.sql)
    want = set(columns)
    return any(set(r["cols"]) == want for r in rows)


def infer_types(fields: list[str], rows: list[tuple[Any, ...]]) -> dict[str, str]:
    """Column types from the first non-null value of each field (``text`` when all are null)."""
    out: dict[str, str] = {}
    for i, f in enumerate(fields):
        value = next((r[i] for r in rows if r[i] is not None), None)
        out[f] = next((sql for t, sql in _INFERRED if isinstance(value, t)), "text")
    return out


def create_table_sql(table: TableName, columns: dict[str, str], key: list[str] | None) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with ``columns`` (name -> SQL type) and a primary key on ``key``."""
    cols = [f"{quote_ident(c)} {t}" for c, t in columns.items()]
    if key:
        cols.append(f"PRIMARY KEY ({', '.join(map(quote_ident, key))})")
    return f"CREATE TABLE IF NOT EXISTS {table.sql} ({', '.join(cols)})"


def lock_key(text: str) -> int:
    """A bigint for ``pg_advisory_xact_lock`` (creators of one table take turns)."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big", signed=True)


def _to_json(v: Any) -> Any:
    return None if v is None else orjson.dumps(v).decode()


def _to_timestamp(v: Any) -> Any:
    # epoch milliseconds (what streamlet's event times and window bounds are) into a timestamp
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _dt.datetime.fromtimestamp(v / 1000, _dt.timezone.utc)
    return v


def _to_naive_timestamp(v: Any) -> Any:
    t = _to_timestamp(v)
    return t.replace(tzinfo=None) if isinstance(t, _dt.datetime) and t.tzinfo is not None else t


def converters(types: list[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    """Per column (by position), the conversion a record value needs for asyncpg's binary COPY:
    maps and lists into json/jsonb text, epoch milliseconds into timestamps."""
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for i, t in enumerate(types):
        if t in ("json", "jsonb"):
            out.append((i, _to_json))
        elif t.startswith("timestamp") and "with time zone" in t:
            out.append((i, _to_timestamp))
        elif t.startswith("timestamp"):
            out.append((i, _to_naive_timestamp))
    return out


def progress_sql(progress: TableName) -> str:
    """The progress table: the last checkpoint committed per sink subtask."""
    return (f"CREATE TABLE IF NOT EXISTS {progress.sql} (sink text NOT NULL, subtask integer NOT NULL, "
            "checkpoint bigint NOT NULL, rows bigint NOT NULL DEFAULT 0, "
            "committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink, subtask))")


def stage_sql(stage: TableName, columns: dict[str, str]) -> str:
    """A staging table: the target's columns (``columns``: name -> type, no constraints) plus the
    transaction (``streamlet.txn`` of the session that copies) and the part within it
    (``streamlet.part``), filled by defaults so COPY sends only the data columns."""
    cols = [f"{quote_ident(c)} {t}" for c, t in columns.items()]
    cols += ["_txn text NOT NULL DEFAULT current_setting('streamlet.txn')",
             "_part integer NOT NULL DEFAULT current_setting('streamlet.part')::integer"]
    return f"CREATE TABLE IF NOT EXISTS {stage.sql} ({', '.join(cols)})"


def merge_sql(target: TableName, stage: TableName, columns: list[str], key: list[str], mode: str,
              parts: int) -> str:
    """The statement that moves one staged transaction (``$1``) into the target."""
    cols = ", ".join(map(quote_ident, columns))
    if mode == "append":
        return f"INSERT INTO {target.sql} ({cols}) SELECT {cols} FROM {stage.sql} WHERE _txn = $1"
    keys = ", ".join(map(quote_ident, key))
    # parts are deduplicated per key in memory; across parts the latest part wins
    select = (f"SELECT DISTINCT ON ({keys}) {cols} FROM {stage.sql} WHERE _txn = $1 ORDER BY {keys}, _part DESC"
              if parts > 1 else f"SELECT {cols} FROM {stage.sql} WHERE _txn = $1")
    return f"INSERT INTO {target.sql} ({cols}) {select} {on_conflict(columns, key)}"


def on_conflict(columns: list[str], key: list[str]) -> str:
    """The ON CONFLICT clause of an upsert: update every non-key column (nothing when all are keys)."""
    rest = [c for c in columns if c not in key]
    if not rest:
        return f"ON CONFLICT ({', '.join(map(quote_ident, key))}) DO NOTHING"
    sets = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in rest)
    return f"ON CONFLICT ({', '.join(map(quote_ident, key))}) DO UPDATE SET {sets}"
