"""``streamlet status``: a job's state and per-vertex numbers, gathered from the REST API and drawn
as a terminal table (or returned as one JSON document for ``--output json``).

Per vertex: parallelism, status, records in/out with their rates, busy and back-pressured time
(% of the last report interval, averaged over subtasks), the back pressure level (the worst
subtask's, Flink's ok/low/high) and the current input watermark (the minimum over subtasks; ``-``
before the first).
"""

from __future__ import annotations

import datetime
from typing import Any

#: Flink's "no watermark yet"
_NO_WATERMARK = -(2 ** 63)


def job_status(client: Any, job_id: str) -> dict[str, Any]:
    """``GET /jobs/:id`` plus, per vertex, its ``backpressure`` and ``watermarks`` (Flink's shapes)
    and, for a failed job, the root cause (``root-exception``)."""
    details = client.job(job_id)
    for v in details["vertices"]:
        v["backpressure"] = client.vertex_backpressure(job_id, v["id"])
        v["watermarks"] = client.vertex_watermarks(job_id, v["id"])
    if details["state"] in ("FAILED", "FAILING", "RESTARTING"):
        details["root-exception"] = client.exceptions(job_id).get("root-exception")
    return details


def _input_watermark(watermarks: list[dict[str, str]]) -> int | None:
    values = [int(w["value"]) for w in watermarks if w["id"].endswith(".currentInputWatermark")]
    if not values or min(values) <= _NO_WATERMARK:
        return None
    return min(values)


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def render_status(st: dict[str, Any]) -> str:
    """The table of :func:`job_status`'s document."""
    lines = [f"job {st['jid']} ({st['name']}): {st['state']}, {st['duration'] / 1000:.1f}s"
             + (f", {st['numRestarts']} restart(s)" if st.get("numRestarts") else "")]
    if st.get("pending-reason"):
        lines.append(f"  waiting: {st['pending-reason']}")
    header = ("VERTEX", "PAR", "STATUS", "IN", "IN/S", "OUT", "OUT/S", "BUSY", "BACKPR", "LEVEL", "WATERMARK")
    rows = [header]
    for v in st["vertices"]:
        m = v["metrics"]
        wm = _input_watermark(v.get("watermarks", []))
        wm_text = "-" if wm is None else datetime.datetime.fromtimestamp(
            wm / 1000, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        rows.append((v["name"], str(v["parallelism"]), v["status"], _count(m["read-records"]),
                     _count(m["read-records-per-second"]), _count(m["write-records"]),
                     _count(m["write-records-per-second"]), f"{m['busy-time-ms-per-second'] / 10:.0f}%",
                     f"{m['backpressured-time-ms-per-second'] / 10:.0f}%",
                     v.get("backpressure", {}).get("backpressure-level", "-"), wm_text))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) if i in (0, 2, 9) else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    if st.get("root-exception"):
        lines.append(f"  cause: {st['root-exception']}")
    return "\n".join(lines)
