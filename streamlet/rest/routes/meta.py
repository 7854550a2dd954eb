"""The API about itself: ``GET /openapi.json``, rendered from the route table the app mounted."""

from __future__ import annotations

from aiohttp import web

from streamlet.rest.responses import ROUTE_TABLE, json_response
from streamlet.rest.spec import Route, openapi_document
from streamlet.version import __version__


async def openapi(request: web.Request) -> web.StreamResponse:
    """``GET /openapi.json``: this API as an OpenAPI 3.1 document (the same table that mounts the handlers)."""
    return json_response(openapi_document(request.app[ROUTE_TABLE], __version__))


ROUTES = [
    Route("GET", "/openapi.json", openapi, "This API as an OpenAPI 3.1 document",
          {"type": "object", "required": ["openapi", "info", "paths"]}, tag="meta"),
]


def document_text() -> str:
    """The document of every route as docs/openapi.json holds it (``python -m streamlet.rest``)."""
    import json

    from streamlet.rest.routes import ROUTES as ALL

    return json.dumps(openapi_document(ALL, __version__), indent=2) + "\n"

