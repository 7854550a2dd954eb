"""Process functions of the Nexmark pipelines whose SQL result is an updating table.

Each keeps the current result of its key in keyed state and emits a row only when that result
changes (Flink's changelog, insert/update rows; the last row per key is the final result).
Used by q4.yaml, q9.yaml, q18.yaml and q19.yaml next to this file.
"""

from __future__ import annotations

from typing import Any


class AverageOfMaxima:
    """q4, keyed by category: the average of each auction's current highest bid.

    Input rows ``{auction, category, final}`` are updates of one auction's maximum (the stage
    before keeps the running maximum per auction); the row emitted is ``{id: category, final}``
    with ``final`` the integer average (Flink's ``AVG`` of a ``BIGINT`` is a ``BIGINT``).
    """

    def open(self, ctx: Any) -> None:
        self.maxima = ctx.map_state("maxima")
        self.totals = ctx.value_state("totals")  # [sum of maxima, number of auctions]

    def process_element(self, r: dict[str, Any], ctx: Any) -> list[dict[str, Any]]:
        old = self.maxima.get(r["auction"])
        total, n = self.totals.value() or (0, 0)
        if old is None:
            total, n = total + r["final"], n + 1
        elif r["final"] > old:
            total += r["final"] - old
        else:
            return []
        self.maxima.put(r["auction"], r["final"])
        self.totals.update([total, n])
        return [{"id": ctx.key, "final": total // n}]


class HighestBid:
    """q9, keyed by auction id: the winning bid (highest price, then earliest) with its auction."""

    def open(self, ctx: Any) -> None:
        self.best = ctx.value_state("best")

    def process_element(self, r: dict[str, Any], ctx: Any) -> list[dict[str, Any]]:
        best = self.best.value()
        if best is not None and (r["price"], -r["bid_dateTime"]) <= (best["price"], -best["bid_dateTime"]):
            return []
        self.best.update(r)
        return [r]


class LatestBid:
    """q18, keyed by (bidder, auction): the bid with the latest dateTime (a later equal one wins)."""

    def open(self, ctx: Any) -> None:
        self.latest = ctx.value_state("latest")

    def process_element(self, r: dict[str, Any], ctx: Any) -> list[dict[str, Any]]:
        latest = self.latest.value()
        if latest is not None and r["dateTime"] < latest["dateTime"]:
            return []
        self.latest.update(r)
        return [r]


class TopTenBids:
    """q19, keyed by auction: the ten highest bids; emits the rows whose rank changed.

    A row carries its ``rank_number`` (1..10); the result's key is ``(auction, rank_number)``.
    Among equal prices the earlier bid ranks first.
    """

    N = 10

    def open(self, ctx: Any) -> None:
        self.top = ctx.value_state("top")

    def process_element(self, r: dict[str, Any], ctx: Any) -> list[dict[str, Any]]:
        top: list[dict[str, Any]] = self.top.value() or []
        if len(top) == self.N and r["price"] <= top[-1]["price"]:
            return []
        pos = len(top)
        while pos > 0 and top[pos - 1]["price"] < r["price"]:
            pos -= 1
        top.insert(pos, r)
        del top[self.N:]
        self.top.update(top)
        return [dict(row, rank_number=i + 1) for i, row in enumerate(top) if i >= pos]
