"""``postgres`` sink (extra ``streamlet[postgres]``: the asyncpg client).

* :mod:`.sink`: :class:`~.sink.PostgresSink` -- upsert by key or append; exactly-once by
  staging each checkpoint's rows and merging them, with the checkpoint id, in one transaction
  when the checkpoint completes;
* :mod:`.schema`: connecting (errors name the address, never the password), identifiers,
  table inspection and creation, the staging and progress tables.

Why asyncpg and not psycopg 3: measured here on 200,000 rows of four bigint columns
(``scripts/bench_postgres.py``), asyncpg's binary ``copy_records_to_table`` took 1.9-2.9 million
rows/s against 1.1-1.8 million for psycopg's binary ``COPY`` with ``write_row``, and
``executemany`` of an ``INSERT ... ON CONFLICT`` 106,000 rows/s against 67,000; the merge
(``INSERT ... SELECT ... ON CONFLICT``, 210,000-290,000 rows/s) is the database's own work and
the same for both.  asyncpg is also asyncio-native, so no call needs a thread.
"""
