"""The postgres sink on the machine's PostgreSQL: upserts, appends, two-phase commit, restores, errors.

The writer is driven as the sink task drives it (write, prepare_commit at a barrier, commit when
the checkpoint completes, restore_state + open after a failure); what reached the table is read
back with psycopg (a client the sink does not use) and compared with what the test computed.
Each test has a database of its own (the ``pg_dsn`` fixture), dropped afterwards.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from streamlet.clock import SystemClock
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.postgres.sink import PostgresSink
from streamlet.errors import PipelineDefinitionError, SinkRecordError
from tests.support.services import _pg_connect, free_port, pg_rows

WHERE = "job.yaml: sinks.db"


def _params(dsn: str, table: str = "t", **kw: Any) -> dict[str, Any]:
    if kw.get("mode") != "append":
        kw.setdefault("key", "k")
    return PostgresSink.validate({"dsn": dsn, "table": table, **kw}, WHERE, ".")


def _writer(params: dict[str, Any], sub: int = 0, parallelism: int = 1, restored: bool = False) -> Any:
    ctx = SimpleNamespace(subtask_index=sub, parallelism=parallelism, clock=SystemClock(), job_name="job",
                          restored=restored)
    return PostgresSink.create_writer(params, ctx)


def _make_table(dsn: str, ddl: str = "CREATE TABLE t (k bigint PRIMARY KEY, v text, n bigint)") -> None:
    with _pg_connect(dsn) as conn:
        conn.execute(ddl)


def _table(dsn: str, table: str = "t") -> dict[Any, tuple[Any, ...]]:
    return {r[0]: tuple(r[1:]) for r in pg_rows(dsn, f"SELECT * FROM {table} ORDER BY 1")}


def _progress(dsn: str) -> dict[int, int]:
    return {s: c for s, c in pg_rows(dsn, "SELECT subtask, checkpoint FROM streamlet_sink_progress")}


def _staged(dsn: str) -> int:
    names = [n for (n,) in pg_rows(dsn, "SELECT tablename FROM pg_tables WHERE tablename LIKE '_streamlet_stage%'")]
    return sum(pg_rows(dsn, f'SELECT count(*) FROM "{n}"')[0][0] for n in names)


async def _closing(w: Any, body: Any) -> Any:
    await w.open()
    try:
        return await body(w)
    finally:
        await w.close()


async def _merged(w: Any) -> None:
    """Wait until the writer's queued merges are done (they run on its merge connection)."""
    async with asyncio.timeout(10):
        await w._join()
    w._raise_background()


def test_exactly_once_upsert_is_visible_only_after_the_checkpoint_completes(pg_dsn: str) -> None:
    _make_table(pg_dsn)

    async def body(w: Any) -> None:
        await w.write([{"k": i % 50, "v": f"a{i}", "n": i} for i in range(200)])  # last row per key wins
        first = await w.prepare_commit(1)
        assert _table(pg_dsn) == {} and _staged(pg_dsn) == 50
        await w.write([{"k": i, "v": "b", "n": -i} for i in range(10)])
        second = await w.prepare_commit(2)
        assert await w.prepare_commit(3) == []  # nothing written since: no transaction
        await w.commit(first)
        await _merged(w)
        assert _table(pg_dsn) == {k: (f"a{150 + k}", 150 + k) for k in range(50)}
        assert _progress(pg_dsn) == {0: 1}
        await w.commit(second)
        await w.commit(second)  # twice: a no-op
        await _merged(w)

    asyncio.run(_closing(_writer(_params(pg_dsn)), body))
    expected = {k: (f"a{150 + k}", 150 + k) for k in range(50)}
    expected.update({k: ("b", -k) for k in range(10)})
    assert _table(pg_dsn) == expected
    assert _progress(pg_dsn) == {0: 2} and _staged(pg_dsn) == 0


def test_crash_after_prepare_restore_merges_once_and_drops_the_failed_attempts_rows(pg_dsn: str) -> None:
    """prepare 1 -> crash before the commit -> restore from 1: its rows are merged at open; what the
    failed attempt staged after checkpoint 1 is never merged and is removed; re-commit is a no-op."""
    _make_table(pg_dsn)
    params = _params(pg_dsn, batch_rows=7)  # several parts per transaction

    async def first(w: Any) -> tuple[list[Any], Any]:
        await w.write([{"k": i, "v": "one", "n": i} for i in range(30)])
        c = await w.prepare_commit(1)
        state = w.snapshot_state(1)
        await w.write([{"k": i, "v": "lost", "n": 0} for i in range(20)])  # staged in parts, never checkpointed
        await w.prepare_commit(2)  # prepared, but checkpoint 2 never completes
        return c, state

    committables, state = asyncio.run(_closing(_writer(params), first))  # "crash": no commit
    assert _table(pg_dsn) == {} and _staged(pg_dsn) == 50

    async def restored(w: Any) -> None:
        assert _table(pg_dsn) == {i: ("one", i) for i in range(30)}  # merged by open
        assert _staged(pg_dsn) == 0
        await w.commit(committables)  # what the runtime does after a restore: harmless
        await _merged(w)
        await w.write([{"k": 100, "v": "new", "n": 1}])
        await w.commit(await w.prepare_commit(3))
        await _merged(w)

    w = _writer(params, restored=True)
    w.restore_state(state)
    asyncio.run(_closing(w, restored))
    assert _table(pg_dsn) == {**{i: ("one", i) for i in range(30)}, 100: ("new", 1)}
    assert _progress(pg_dsn) == {0: 3}


def test_a_checkpoint_already_recorded_is_skipped_after_a_restore(pg_dsn: str) -> None:
    """Restoring from checkpoint 1 after 1 and 2 were merged must not write 1's older rows again."""
    _make_table(pg_dsn)
    params = _params(pg_dsn)

    async def run(w: Any) -> Any:
        await w.write([{"k": 1, "v": "old", "n": 1}])
        c1 = await w.prepare_commit(1)
        state1 = w.snapshot_state(1)
        await w.commit(c1)
        await w.write([{"k": 1, "v": "newer", "n": 2}])
        await w.commit(await w.prepare_commit(2))
        await _merged(w)
        return state1

    state1 = asyncio.run(_closing(_writer(params), run))
    assert state1["pending"] and _table(pg_dsn) == {1: ("newer", 2)}
    w = _writer(params, restored=True)
    w.restore_state([state1])
    asyncio.run(_closing(w, lambda w: asyncio.sleep(0)))
    assert _table(pg_dsn) == {1: ("newer", 2)}
    assert _progress(pg_dsn) == {0: 2}


def test_restore_at_another_parallelism_merges_every_restored_transaction(pg_dsn: str) -> None:
    _make_table(pg_dsn)
    params = _params(pg_dsn)

    async def old(sub: int) -> Any:
        w = _writer(params, sub, 2)
        await w.open()
        try:
            await w.write([{"k": sub * 100 + i, "v": "x", "n": i} for i in range(5)])
            await w.prepare_commit(4)
            return w.snapshot_state(4)
        finally:
            await w.close()

    states = [asyncio.run(old(0)), asyncio.run(old(1))]
    w = _writer(params, 0, 1, restored=True)
    w.restore_state(states)
    asyncio.run(_closing(w, lambda w: asyncio.sleep(0)))
    assert _table(pg_dsn) == {s * 100 + i: ("x", i) for s in (0, 1) for i in range(5)}
    assert _progress(pg_dsn) == {0: 4, 1: 4}


def test_a_fresh_start_forgets_the_progress_of_an_earlier_run(pg_dsn: str) -> None:
    _make_table(pg_dsn)
    params = _params(pg_dsn)

    async def run(n: int, value: str) -> None:
        async def body(w: Any) -> None:
            await w.write([{"k": 1, "v": value, "n": n}])
            await w.commit(await w.prepare_commit(n))
            await _merged(w)
        await _closing(_writer(params), body)

    asyncio.run(run(7, "first run"))
    asyncio.run(run(1, "second run"))  # checkpoint ids start again at 1
    assert _table(pg_dsn) == {1: ("second run", 1)}
    assert _progress(pg_dsn) == {0: 1}


def test_append_mode_exactly_once_writes_every_row_once(pg_dsn: str) -> None:
    _make_table(pg_dsn, "CREATE TABLE events (k bigint, v text, n bigint)")
    params = _params(pg_dsn, "events", mode="append", batch_rows=100)
    recs = [{"k": i % 3, "v": "e", "n": i} for i in range(1000)]

    async def body(w: Any) -> None:
        await w.write(recs[:600])
        c = await w.prepare_commit(1)
        await w.write(recs[600:])
        await w.commit(c)
        await w.finish()  # the rest, merged at the end of input

    asyncio.run(_closing(_writer(params), body))
    assert sorted(n for (n,) in pg_rows(pg_dsn, "SELECT n FROM events")) == list(range(1000))


def test_upsert_across_parts_keeps_the_last_row_per_key(pg_dsn: str) -> None:
    _make_table(pg_dsn)
    recs = [{"k": i % 13, "v": "p", "n": i} for i in range(500)]

    async def body(w: Any) -> None:
        for i in range(0, 500, 9):
            await w.write(recs[i:i + 9])
        await w.finish()

    asyncio.run(_closing(_writer(_params(pg_dsn, batch_rows=10)), body))
    last: dict[int, int] = {}
    for r in recs:
        last[r["k"]] = r["n"]
    assert _table(pg_dsn) == {k: ("p", n) for k, n in last.items()}


@pytest.mark.parametrize("guarantee", ["at_least_once", "none"])
def test_at_least_once_and_none_write_in_batches_without_the_progress_table(pg_dsn: str, guarantee: str) -> None:
    _make_table(pg_dsn)

    async def body(w: Any) -> None:
        await w.write([{"k": i, "v": "a", "n": i} for i in range(25)])  # >= batch_rows: written now
        assert len(_table(pg_dsn)) == 25
        await w.write([{"k": 1, "v": "b", "n": 0}])
        assert await w.prepare_commit(1) == []
        assert _table(pg_dsn)[1] == (("b", 0) if guarantee == "at_least_once" else ("a", 1))
        await w.write([{"k": 2, "v": "c", "n": 0}])
        await w.finish()

    asyncio.run(_closing(_writer(_params(pg_dsn, guarantee=guarantee, batch_rows=20, flush_interval="1h")), body))
    assert _table(pg_dsn) == {**{i: ("a", i) for i in range(25)}, 1: ("b", 0), 2: ("c", 0)}
    assert pg_rows(pg_dsn, "SELECT to_regclass('streamlet_sink_progress')") == [(None,)]


def test_create_table_from_the_first_rows_and_from_declared_columns(pg_dsn: str) -> None:
    async def from_rows(w: Any) -> None:
        await w.write([{"k": 1, "name": None, "price": 1.5, "ok": True, "tags": ["a"], "meta": {"x": 1}},
                       {"k": 2, "name": "b", "price": 2.0, "ok": False, "tags": [], "meta": {}}])
        await w.finish()

    asyncio.run(_closing(_writer(_params(pg_dsn, "inferred", create_table=True)), from_rows))
    types = dict(pg_rows(pg_dsn, "SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'inferred'"))
    assert types == {"k": "bigint", "name": "text", "price": "double precision", "ok": "boolean",
                     "tags": "jsonb", "meta": "jsonb"}
    assert pg_rows(pg_dsn, "SELECT k, name, tags, meta->>'x' FROM inferred ORDER BY k") == [
        (1, None, ["a"], "1"), (2, "b", [], None)]

    async def declared(w: Any) -> None:
        assert pg_rows(pg_dsn, "SELECT count(*) FROM declared") == [(0,)]  # made at open
        await w.write([{"k": 1, "v": "x", "at": 1_700_000_000_000}])
        await w.finish()

    params = _params(pg_dsn, "declared", create_table=True, columns={"k": "bigint", "v": "text",
                                                                      "at": "timestamptz"})
    asyncio.run(_closing(_writer(params), declared))
    assert pg_rows(pg_dsn, "SELECT k, v, extract(epoch FROM at)::bigint FROM declared") == [(1, "x", 1_700_000_000)]


def test_columns_that_do_not_match_are_named(pg_dsn: str) -> None:
    _make_table(pg_dsn)

    async def body(w: Any) -> None:
        await w.write([{"k": 1, "v": "x", "price": 3, "extra": 1}])

    with pytest.raises(ConnectorError) as exc:
        asyncio.run(_closing(_writer(_params(pg_dsn)), body))
    msg = str(exc.value)
    assert "['price', 'extra']" in msg and "['k', 'v', 'n']" in msg and "'t'" in msg

    with pytest.raises(ConnectorError, match=r"no key column\(s\) \['id'\].*\['k', 'v', 'n'\]"):
        asyncio.run(_closing(_writer(_params(pg_dsn, key="id")), lambda w: asyncio.sleep(0)))
    with pytest.raises(ConnectorError, match=r"no column\(s\) \['zzz'\]"):
        asyncio.run(_closing(_writer(_params(pg_dsn, columns={"k": "bigint", "zzz": "text"})),
                             lambda w: asyncio.sleep(0)))
    _make_table(pg_dsn, "CREATE TABLE nokey (k bigint, v text)")
    with pytest.raises(ConnectorError, match="unique index or primary key on \\['k'\\]"):
        asyncio.run(_closing(_writer(_params(pg_dsn, "nokey")), lambda w: asyncio.sleep(0)))
    with pytest.raises(ConnectorError, match="does not exist.*create_table: true"):
        asyncio.run(_closing(_writer(_params(pg_dsn, "missing")), lambda w: asyncio.sleep(0)))

    async def wrong_type(w: Any) -> None:
        await w.write([{"k": 1, "v": 5, "n": 1}])
        await w.finish()

    with pytest.raises(ConnectorError, match="'v': 'text'"):
        asyncio.run(_closing(_writer(_params(pg_dsn)), wrong_type))

    async def later_field(w: Any) -> None:
        await w.write([{"k": 1, "v": "a"}, {"k": 2, "v": "b", "n": 3, "oops": 1}])

    with pytest.raises(SinkRecordError, match="'oops'"):
        asyncio.run(_closing(_writer(_params(pg_dsn)), later_field))


def test_a_dsn_that_does_not_connect_names_the_address_and_never_the_password(pg_dsn: str) -> None:
    port = free_port()
    dsn = f"postgresql://someone:s3cret-pw@127.0.0.1:{port}/analytics"
    with pytest.raises(ConnectorError) as exc:
        asyncio.run(_writer(_params(dsn)).open())
    msg = str(exc.value)
    assert f"someone@127.0.0.1:{port}/analytics" in msg and "s3cret-pw" not in msg and "refused" in msg.lower()

    missing_db = pg_dsn.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(ConnectorError, match="no_such_database_here.*does not exist"):
        asyncio.run(_writer(_params(missing_db)).open())


def test_validation_errors_name_the_key() -> None:
    cases = [
        ({"dsn": "host=x dbname=y", "table": "t", "key": "k"}, "sinks.db.dsn"),
        ({"dsn": "postgresql://u:pw@h/db", "table": "t"}, "sinks.db.key"),
        ({"dsn": "postgresql://u@h/db", "table": "t", "key": "k", "mode": "merge"}, "sinks.db.mode"),
        ({"dsn": "postgresql://u@h/db", "table": "t", "key": "k", "columns": {"v": "text"}}, "sinks.db.columns"),
        ({"dsn": "postgresql://u@h/db", "table": "t", "key": "k", "batch_rows": 0}, "sinks.db.batch_rows"),
        ({"dsn": "postgresql://u@h/db", "table": "t", "key": "k", "flush_interval": "soon"},
         "sinks.db.flush_interval"),
    ]
    for kw, where in cases:
        with pytest.raises(PipelineDefinitionError) as exc:
            PostgresSink.validate(kw, WHERE, ".")
        assert exc.value.where.endswith(where), (kw, str(exc.value))
        assert "pw" not in str(exc.value)


# -- through YAML pipelines ---------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2])
def test_windowed_counts_pipeline_upserts_the_complete_result(pg_dsn: str, tmp_path: Any, p: int) -> None:
    from collections import Counter

    from tests.support.pipelines import run_pipeline, write_jsonl

    bids = [{"auction": k % 11, "price": k % 97, "dateTime": 1_700_000_000_000 + k * 53} for k in range(5000)]
    write_jsonl(tmp_path / "bids.jsonl", bids)
    run_pipeline(tmp_path, f"""
        name: pg-counts
        sources:
          bids: {{type: file, path: bids.jsonl, format: jsonl, timestamp: dateTime}}
        transforms:
          counts:
            input: bids
            key_by: auction
            window: {{type: tumbling, size: 10s}}
            aggregate: {{num: count, top: {{max: price}}}}
        sinks:
          db: {{input: counts, type: postgres, dsn: "{pg_dsn}", table: counts, key: [auction, window_start],
               create_table: true, batch_rows: 100}}
        """, p)
    expected_num = Counter((b["auction"], b["dateTime"] // 10_000 * 10_000) for b in bids)
    expected_top: dict[tuple[int, int], int] = {}
    for b in bids:
        k = (b["auction"], b["dateTime"] // 10_000 * 10_000)
        expected_top[k] = max(expected_top.get(k, 0), b["price"])
    got = {(a, ws): (we, n, top) for a, ws, we, n, top in
           pg_rows(pg_dsn, "SELECT auction, window_start, window_end, num, top FROM counts")}
    assert got == {k: (k[1] + 10_000, n, expected_top[k]) for k, n in expected_num.items()}


def test_running_aggregate_upserts_the_final_value_and_append_keeps_every_update(pg_dsn: str, tmp_path: Any) -> None:
    from tests.support.pipelines import run_pipeline, write_jsonl

    _make_table(pg_dsn, "CREATE TABLE totals (user_id text PRIMARY KEY, total bigint)")
    _make_table(pg_dsn, "CREATE TABLE updates (user_id text, total bigint)")
    clicks = [{"user_id": f"u{k % 7}", "n": k} for k in range(700)]
    write_jsonl(tmp_path / "clicks.jsonl", clicks)
    run_pipeline(tmp_path, f"""
        name: pg-totals
        sources:
          clicks: {{type: file, path: clicks.jsonl, format: jsonl}}
        transforms:
          totals: {{input: clicks, key_by: user_id, aggregate: {{total: {{sum: n}}}}}}
        sinks:
          db: {{input: totals, type: postgres, dsn: "{pg_dsn}", table: totals, key: user_id}}
          log: {{input: totals, type: postgres, dsn: "{pg_dsn}", table: updates, mode: append,
                guarantee: at_least_once}}
        """, 2)
    sums: dict[str, int] = {}
    for c in clicks:
        sums[c["user_id"]] = sums.get(c["user_id"], 0) + c["n"]
    assert dict(pg_rows(pg_dsn, "SELECT user_id, total FROM totals")) == sums
    assert pg_rows(pg_dsn, "SELECT count(*) FROM updates") == [(700,)]  # one row per update


def test_a_pipeline_whose_records_do_not_fit_the_table_fails_naming_the_columns(pg_dsn: str, tmp_path: Any) -> None:
    from tests.support.pipelines import plan_file, run_graph, write_jsonl, write_pipeline

    _make_table(pg_dsn)
    write_jsonl(tmp_path / "in.jsonl", [{"k": 1, "value": "x"}])
    path = write_pipeline(tmp_path, f"""
        name: pg-mismatch
        sources: {{rows: {{type: file, path: in.jsonl, format: jsonl}}}}
        sinks: {{db: {{input: rows, type: postgres, dsn: "{pg_dsn}", table: t, key: k}}}}
        """)
    result = run_graph(plan_file(path))
    assert result.state == "FAILED"
    assert "['value']" in str(result.error) and "['k', 'v', 'n']" in str(result.error)
