"""The web dashboard: ``GET /`` (the page) and ``GET /static/{name}`` (its script and style sheet).

The dashboard is three files shipped in the package (``streamlet/rest/static/``, listed in
``pyproject.toml``'s package data): no build step, no CDN.  It is a single page that reads the
REST API with ``fetch`` and draws the job graph, the flame graph and the tables itself (see
docs/operations.md).  The files are read once, in a thread, on the first request, and served
from memory afterwards.

These routes are not part of the REST API (they are not under ``/v1/`` and need no token: the
page holds no data; with ``security.auth.token`` set it asks for the token and sends it with
every API request).
"""

from __future__ import annotations

import asyncio
import importlib.resources
from typing import Any

from aiohttp import web

#: file name -> content type; nothing else under static/ is served
ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
#: the files, read once per process (they are part of the installed package)
_FILES: dict[str, bytes] = {}


def _read_assets() -> dict[str, bytes]:
    root = importlib.resources.files("streamlet.rest") / "static"
    return {name: (root / name).read_bytes() for name in ASSETS}


async def _asset(request: web.Request, name: str) -> web.StreamResponse:
    if not _FILES:
        _FILES.update(await asyncio.to_thread(_read_assets))
    files = _FILES
    # no-cache: a browser revalidates, so an upgraded JobManager serves its own page at once
    return web.Response(body=files[name], content_type=ASSETS[name], charset="utf-8",
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


async def index(request: web.Request) -> web.StreamResponse:
    """``GET /``: the dashboard page."""
    return await _asset(request, "index.html")


async def static(request: web.Request) -> web.StreamResponse:
    """``GET /static/{name}``: one of :data:`ASSETS` (404 for anything else)."""
    name = request.match_info["name"]
    if name not in ASSETS or name == "index.html":
        raise web.HTTPNotFound()
    return await _asset(request, name)


def is_public(request: Any) -> bool:
    """True for the dashboard's own files, which the auth middleware lets through without a token."""
    return request.method in ("GET", "HEAD") and (request.path == "/" or request.path.startswith("/static/"))


ROUTES = [
    ("GET", "/", index),
    ("GET", "/static/{name}", static),
]
