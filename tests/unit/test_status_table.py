"""``streamlet status``'s table, from a job document written here."""

from __future__ import annotations

from streamlet.client.status import render_status


def _vertex(name: str, par: int, wms: list[int]) -> dict:
    return {"id": name * 4, "name": name, "parallelism": par, "status": "RUNNING",
            "metrics": {"read-records": 12_345, "write-records": 2_000_000, "read-records-per-second": 950.0,
                        "write-records-per-second": 0.4, "busy-time-ms-per-second": 123.0,
                        "backpressured-time-ms-per-second": 610.0},
            "backpressure": {"backpressure-level": "high"},
            "watermarks": [x for i, w in enumerate(wms) for x in (
                {"id": f"{i}.currentInputWatermark", "value": str(w)},
                {"id": f"{i}.currentOutputWatermark", "value": str(w)})]}


def test_one_row_per_vertex_with_rates_ratios_level_and_the_minimum_watermark() -> None:
    doc = {"jid": "a" * 32, "name": "j", "state": "RUNNING", "duration": 61_500, "numRestarts": 2,
           "vertices": [_vertex("src", 2, [1_700_000_004_000, 1_700_000_002_500]),
                        _vertex("sink", 1, [-(2 ** 63)])], "root-exception": None}
    lines = render_status(doc).splitlines()
    assert lines[0] == f"job {'a' * 32} (j): RUNNING, 61.5s, 2 restart(s)"
    assert lines[1].split() == ["VERTEX", "PAR", "STATUS", "IN", "IN/S", "OUT", "OUT/S", "BUSY", "BACKPR", "LEVEL",
                                "WATERMARK"]
    # 1_700_000_002_500 ms is 2023-11-14 22:13:22.500 UTC; 12% busy, 61% back-pressured
    assert lines[2].split() == ["src", "2", "RUNNING", "12.3k", "950", "2.0M", "0", "12%", "61%", "high",
                                "22:13:22.500"]
    assert lines[3].split()[-1] == "-"  # no watermark yet
