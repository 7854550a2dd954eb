"""Every REST route: ``(method, path, handler)``; :func:`streamlet.rest.app.create_app` mounts them."""

from __future__ import annotations

from streamlet.rest.routes import cluster, jobs

ROUTES = [*cluster.ROUTES, *jobs.ROUTES]
