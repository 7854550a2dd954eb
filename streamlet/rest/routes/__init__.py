"""Every REST route, as :class:`streamlet.rest.spec.Route` entries; :func:`streamlet.rest.app.create_app`
mounts them and ``GET /openapi.json`` renders them (a plain ``(method, path, handler)`` tuple is
accepted too and documented without a schema)."""

from __future__ import annotations

from streamlet.rest.routes import checkpoints, cluster, flamegraph, jobs, meta, metrics

ROUTES = [*cluster.ROUTES, *jobs.ROUTES, *checkpoints.ROUTES, *flamegraph.ROUTES, *metrics.ROUTES, *meta.ROUTES]
