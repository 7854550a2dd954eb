"""Helpers shared by the app and its routes: JSON answers and the gateway of a request."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from streamlet.rest.base import RestGateway
from streamlet.rest.limits import RestLimits

GATEWAY: web.AppKey[Any] = web.AppKey("gateway", object)
LIMITS: web.AppKey[RestLimits] = web.AppKey("limits", RestLimits)
#: the route table the app mounted (:class:`streamlet.rest.spec.Route` entries), for ``/openapi.json``
ROUTE_TABLE: web.AppKey[Any] = web.AppKey("routes", object)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer encoded with orjson."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, *messages: str, headers: dict[str, str] | None = None) -> web.Response:
    """``{"errors": [...]}`` with ``status``."""
    resp = json_response({"errors": list(messages)}, status)
    if headers:
        resp.headers.update(headers)
    return resp


def gateway_of(request: web.Request) -> RestGateway:
    """The gateway the application was created with."""
    return request.app[GATEWAY]  # type: ignore[no-any-return]


def limits_of(request: web.Request) -> RestLimits:
    """The request limits the application was created with."""
    return request.app[LIMITS]
