"""The Kappa example of configs/pipelines/kappa on a real broker (tansu) and the real PostgreSQL.

1. ``produce.yaml``: Nexmark events into the bids, persons and auctions topics;
2. ``bids-per-auction.yaml`` (bounded: the topic up to its end): bids per auction per 10 s
   tumbling window, upserted into PostgreSQL;
3. the table must equal the counts computed here from the bids topic read with a plain consumer,
   and ``psql`` (as the README shows) sees it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streamlet.api.planner import plan
from streamlet.api.yaml.loader import load
from tests.support.pipelines import run_graph
from tests.support.services import Broker, pg_rows

KAPPA = Path(__file__).resolve().parents[2] / "configs" / "pipelines" / "kappa"


def expected_counts(broker: Broker) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(auction, window_start) -> (window_end, num, max_price) from the bids topic itself."""
    bids = [orjson.loads(m.value()) for m in broker.consume_all("bids")]
    assert bids, "no bids in the topic"
    num = Counter((b["auction"], b["dateTime"] // 10_000 * 10_000) for b in bids)
    top: dict[tuple[int, int], int] = {}
    for b in bids:
        k = (b["auction"], b["dateTime"] // 10_000 * 10_000)
        top[k] = max(top.get(k, b["price"]), b["price"])
    return {k: (k[1] + 10_000, n, top[k]) for k, n in num.items()}


def table(dsn: str) -> dict[tuple[int, int], tuple[int, int, int]]:
    return {(a, ws): (we, n, mp) for a, ws, we, n, mp in
            pg_rows(dsn, "SELECT auction, window_start, window_end, num, max_price FROM bids_per_auction")}


def test_nexmark_to_kafka_to_windowed_counts_in_postgres(kafka_broker: Broker, pg_dsn: str) -> None:
    events = 20_000
    produce = plan(load(KAPPA / "produce.yaml", variables={"KAFKA": kafka_broker.bootstrap, "EVENTS": str(events)}))
    result = run_graph(produce)
    assert result.state == "FINISHED", result.error
    counts = {t: len(kafka_broker.consume_all(t)) for t in ("bids", "persons", "auctions")}
    assert counts == {"bids": events * 46 // 50, "persons": events // 50, "auctions": events * 3 // 50}

    job = plan(load(KAPPA / "bids-per-auction.yaml", variables={
        "KAFKA": kafka_broker.bootstrap, "PG_DSN": pg_dsn, "BOUNDED": "true", "PARALLELISM": "2"}))
    result = run_graph(job)
    assert result.state == "FINISHED", result.error
    expected = expected_counts(kafka_broker)
    assert table(pg_dsn) == expected
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed; the table was checked with psycopg")
    out = subprocess.run(["psql", pg_dsn, "-Atc", "SELECT sum(num) FROM bids_per_auction"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert int(out) == sum(n for _we, n, _mp in expected.values())
