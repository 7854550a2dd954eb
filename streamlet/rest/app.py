"""The REST API application (aiohttp).

:func:`create_app` takes the JobManager as a :class:`~streamlet.rest.base.RestGateway` and
serves every route of :mod:`streamlet.rest.routes` both at its path and under ``/v1/`` (what
Flink's clients call).  Middlewares, outermost first:

1. errors: every error answer is JSON ``{"errors": [...]}``; unknown ids are 404, invalid
   pipelines 400, wrong methods 405, a JobManager not accepting work 503, unexpected failures 500
   with a one-line reason (never a stack trace, which goes to the log);
2. auth: with a token configured, a request without ``Authorization: Bearer <token>`` is
   answered 401 (compared in constant time; the token is never logged).  The dashboard's own
   files (``GET /``, ``/static/*``) need no token: they hold no data.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from streamlet.errors import ConfigError, PipelineDefinitionError, PipelineLimitError, StreamletError
from streamlet.rest.base import ConflictError, NotFoundError, RestGateway, UnavailableError
from streamlet.rest.limits import RestLimits
from streamlet.rest.responses import GATEWAY, LIMITS, ROUTE_TABLE, error_response
from streamlet.rest.routes import ROUTES, dashboard
from streamlet.rest.spec import as_route
from streamlet.rpc.auth import bearer_ok

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            reason = f"not found: {request.path}; see docs/rest.md for the endpoints"
        elif exc.status == 405:
            allowed = exc.headers.get("Allow", "")
            reason = f"method {request.method} is not allowed on {request.path}; allowed: {allowed}"
        return error_response(exc.status, reason, headers=headers)
    except HttpProcessingError as exc:
        # a malformed part of the request aiohttp only parses on demand (a multipart header)
        status = exc.code if 400 <= exc.code < 500 else 400
        return error_response(status, f"malformed request: {exc.message.strip()}")
    except NotFoundError as exc:
        return error_response(404, str(exc))
    except ConflictError as exc:
        return error_response(409, str(exc))
    except UnavailableError as exc:
        return error_response(503, str(exc))
    except PipelineLimitError as exc:
        return error_response(exc.status, str(exc))
    except (PipelineDefinitionError, ConfigError) as exc:
        return error_response(400, str(exc))
    except StreamletError as exc:
        return error_response(400, str(exc))
    except Exception as exc:  # noqa: BLE001 - the client gets a reason, the log gets the trace
        logger.exception("REST %s %s failed", request.method, request.path)
        return error_response(500, f"internal server error: {type(exc).__name__}: {exc}")


def _auth(token: str | None) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not dashboard.is_public(request) and not bearer_ok(request.headers.get("Authorization"), token):
            return error_response(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
                                       "(the CLI sends security.auth.token or STREAMLET_TOKEN)",
                                  headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return auth


def create_app(gateway: RestGateway, token: str | None = None, limits: RestLimits | None = None,
               routes: list[Any] | None = None) -> web.Application:
    """The REST application serving ``gateway``, refusing requests past ``limits``.

    ``routes`` is the route table (default: every route of :mod:`streamlet.rest.routes`).

    Example (tests use a fake gateway the same way)::

        app = create_app(dispatcher, token=config["security.auth.token"], limits=RestLimits.from_config(config))
        runner = web.AppRunner(app); await runner.setup()
    """
    limits = limits or RestLimits()
    app = web.Application(middlewares=[_errors, _auth(token)], client_max_size=limits.max_content_length)
    app[GATEWAY] = gateway
    app[LIMITS] = limits
    table = [as_route(r) for r in (ROUTES if routes is None else routes)]
    app[ROUTE_TABLE] = table
    for prefix in ("", "/v1"):
        for route in table:
            app.router.add_route(route.method, prefix + route.path, route.handler)
    # the web dashboard (not an API route: not under /v1/, not in the route table)
    for method, path, handler in dashboard.ROUTES:
        app.router.add_route(method, path, handler)
    return app
