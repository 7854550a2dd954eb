"""A TaskManager's ``GET /metrics`` (Prometheus text format) on ``metrics.address:metrics.port``.

``metrics.port`` is a port, a range ``9249-9259`` (the first free one is taken, as Flink's
PrometheusReporter does, so several TaskManagers on one host need no per-process setting) or
``0`` (the OS picks).  When no port of the range is free the TaskManager runs without the
endpoint and says so in its log: metrics are never a reason not to run a job.  The chosen port is
reported at registration (``resources.metrics_port``, shown by ``GET /taskmanagers/:id``).

With ``security.auth.token`` set, a scrape must carry ``Authorization: Bearer <token>``
(Prometheus: ``authorization: {credentials: ...}`` in the scrape config).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from aiohttp import web

from streamlet.errors import ConfigError
from streamlet.metrics.registry import MetricGroup
from streamlet.metrics.reporters import CONTENT_TYPE, prometheus_text
from streamlet.rpc.auth import bearer_ok

logger = logging.getLogger(__name__)


def parse_ports(spec: str | int) -> list[int]:
    """The ports of ``metrics.port``: ``"9249"``, ``"9249-9259"`` or ``"0"``."""
    text = str(spec).strip()
    try:
        if "-" in text:
            lo, hi = (int(p) for p in text.split("-", 1))
        else:
            lo = hi = int(text)
    except ValueError:
        raise ConfigError(f"metrics.port: expected a port or a range like '9249-9259', got {spec!r}") from None
    if not (0 <= lo <= hi <= 65535):
        raise ConfigError(f"metrics.port: {spec!r} is not a port range within 0-65535; e.g. '9249-9259'")
    return list(range(lo, hi + 1))


class MetricsServer:
    """Serves ``roots()`` as Prometheus text at ``/metrics`` until :meth:`stop`."""

    def __init__(self, host: str, ports: str | int, roots: Callable[[], Iterable[MetricGroup]],
                 token: str | None = None) -> None:
        self.host = host
        self.ports = parse_ports(ports)
        self.roots = roots
        self.token = token
        #: the port it listens on, or None (not started, or no free port)
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if not bearer_ok(request.headers.get("Authorization"), self.token):
            return web.json_response({"errors": ["missing or wrong bearer token"]}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        return web.Response(body=prometheus_text(self.roots), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> int | None:
        """Listen on the first free port of the range; returns it (None: none was free, logged)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        for port in self.ports:
            site = web.TCPSite(runner, self.host, port)
            try:
                await site.start()
            except OSError:
                continue
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else port
            self._runner = runner
            return self.port
        await runner.cleanup()
        logger.warning("no free port for GET /metrics in metrics.port %s-%s on %s; running without it "
                       "(widen the range with -D metrics.port=...)", self.ports[0], self.ports[-1], self.host)
        return None

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
