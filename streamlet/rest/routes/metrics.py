"""``GET /metrics``: the JobManager's metrics in the Prometheus text format (Flink's names).

See :mod:`streamlet.metrics.reporters` for the names and labels and docs/operations.md for the
mapping; TaskManagers serve their own on ``metrics.port``.
"""

from __future__ import annotations

from aiohttp import web

from streamlet.metrics.reporters import CONTENT_TYPE, prometheus_text
from streamlet.rest.responses import gateway_of
from streamlet.rest.spec import Route


async def metrics(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: Prometheus text exposition of the JobManager's metrics (and, in ``streamlet run``,
    of its in-process TaskManager's)."""
    gateway = gateway_of(request)
    return web.Response(body=prometheus_text(gateway.metric_groups), headers={"Content-Type": CONTENT_TYPE})


ROUTES = [
    Route("GET", "/metrics", metrics, "Metrics in the Prometheus text format, with Flink's names and labels",
          {"type": "string"}, content_type="text/plain", tag="metrics"),
]
