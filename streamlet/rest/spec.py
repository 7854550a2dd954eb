"""The REST API declared once: a table of :class:`Route` s that both mounts the aiohttp handlers
and renders the OpenAPI 3 document (``GET /openapi.json``, docs/openapi.json).

A route names its method, path, handler, a one-line summary, its query parameters, the content
types its request body may have, the success status and the JSON Schema of the success body
(from :mod:`streamlet.rest.schemas`, next to the dataclasses that produce those bodies), and the
error statuses it may answer.  Nothing about a route is written anywhere else, so the document
cannot drift from the handlers; the schemathesis test (tests/integration/test_openapi.py) checks
the answers of a live JobManager against it.

Example::

    Route("GET", "/jobs/{jobid}", job_details, "One job: state, vertices, metrics",
          response=schemas.JOB_DETAILS, errors=(404,))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: JSON Schema of ``{"errors": [...]}``, every error answer of the API
ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["errors"],
    "properties": {"errors": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
}

_ERROR_TEXT = {400: "bad input (the message names what and how to fix it)", 401: "missing or wrong bearer token",
               404: "unknown id or path", 405: "wrong method", 408: "the body arrived too slowly", 409: "not in a state to answer (e.g. the job is not running)",
               413: "a size limit was passed (the message names its key)", 500: "unexpected failure (one line)",
               502: "a TaskManager could not be asked", 503: "the JobManager is starting or shutting down"}

_PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Param:
    """A query parameter of a route."""

    name: str
    doc: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Route:
    """One endpoint (see the module docstring).

    ``response`` is the JSON Schema of the success body (``content_type`` JSON unless said
    otherwise); ``request`` maps request content types to their schemas (empty: no body);
    ``path_params`` gives a schema to a path parameter (default: a non-empty string).
    """

    method: str
    path: str
    handler: Handler
    summary: str
    response: dict[str, Any] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    request: dict[str, dict[str, Any]] = field(default_factory=dict)
    content_type: str = "application/json"
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag: str = ""
    #: shown in the document (False for the dashboard's static files and the like)
    documented: bool = True

    def operation_id(self) -> str:
        name = getattr(self.handler, "__name__", "handler")
        return f"{name}_{self.method.lower()}" if self.method != "GET" else name


def as_route(entry: Route | tuple[str, str, Handler]) -> Route:
    """A route table entry; a plain ``(method, path, handler)`` tuple is a route without schema."""
    if isinstance(entry, Route):
        return entry
    method, path, handler = entry
    doc = (getattr(handler, "__doc__", None) or "").strip().splitlines()
    return Route(method, path, handler, doc[0] if doc else path)


#: job, vertex and TaskManager ids (Flink's 32 lowercase hex form)
ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{32}$"}


def openapi_document(routes: Iterable[Route | tuple[str, str, Handler]], version: str,
                     auth: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (what ``GET /openapi.json`` answers)."""
    paths: dict[str, dict[str, Any]] = {}
    for entry in routes:
        route = as_route(entry)
        if not route.documented:
            continue
        op: dict[str, Any] = {"operationId": route.operation_id(), "summary": route.summary}
        doc = (getattr(route.handler, "__doc__", None) or "").strip()
        if doc:
            op["description"] = doc
        if route.tag:
            op["tags"] = [route.tag]
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": route.path_params.get(name, {"type": "string", "minLength": 1})}
                      for name in _PATH_PARAM.findall(route.path)]
        parameters += [{"name": p.name, "in": "query", "required": p.required, "description": p.doc,
                        "schema": p.schema} for p in route.params]
        if parameters:
            op["parameters"] = parameters
        if route.request:
            op["requestBody"] = {"required": True,
                                 "content": {ct: {"schema": s} for ct, s in route.request.items()}}
        ok: dict[str, Any] = {"description": "success"}
        if route.response is not None:
            ok["content"] = {route.content_type: {"schema": route.response}}
        responses: dict[str, Any] = {str(route.status): ok}
        for status in sorted({*route.errors, 500, *((401,) if auth else ())}):
            responses[str(status)] = {"description": _ERROR_TEXT.get(status, "error"),
                                      "content": {"application/json": {"schema": ERRORS_SCHEMA}}}
        op["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "streamlet REST API", "version": version,
                 "description": "The JobManager's REST API (Flink's paths and JSON shapes where Flink has the "
                                "endpoint). Every path is also served under /v1/. Errors are "
                                '{"errors": [...]} with a 4xx status for bad input.'},
        "paths": paths,
    }
    if auth:
        doc["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        doc["security"] = [{}, {"bearer": []}]
    return doc
