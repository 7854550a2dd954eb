"""Cluster routes: ``/overview``, ``/taskmanagers[/:tmid]``, ``/config``, ``/jobmanager/config``."""

from __future__ import annotations

from aiohttp import web

from streamlet.version import __version__
from streamlet.rest import schemas
from streamlet.rest.responses import gateway_of, json_response
from streamlet.rest.spec import Route


async def overview(request: web.Request) -> web.StreamResponse:
    """``GET /overview``: TaskManagers, slots and job counts."""
    return json_response(gateway_of(request).overview().to_json())


async def task_managers(request: web.Request) -> web.StreamResponse:
    """``GET /taskmanagers``."""
    return json_response({"taskmanagers": [t.to_json() for t in gateway_of(request).task_managers()]})


async def task_manager(request: web.Request) -> web.StreamResponse:
    """``GET /taskmanagers/:tmid`` (with the slots each job holds)."""
    return json_response(gateway_of(request).task_manager(request.match_info["tmid"]).to_json(details=True))


async def dashboard_config(request: web.Request) -> web.StreamResponse:
    """``GET /config``: what Flink's web dashboard reads first."""
    return json_response({"refresh-interval": 3000, "timezone-name": "UTC", "timezone-offset": 0,
                          "flink-version": __version__, "flink-revision": "", "streamlet-version": __version__,
                          "features": {"web-submit": True, "web-cancel": True, "web-rescale": False,
                                       "web-history": False}})


async def jobmanager_config(request: web.Request) -> web.StreamResponse:
    """``GET /jobmanager/config``: the effective configuration as ``[{key, value}]`` (secrets hidden)."""
    conf = gateway_of(request).configuration()
    return json_response([{"key": k, "value": "" if v is None else str(v)} for k, v in sorted(conf.items())])


ROUTES = [
    Route("GET", "/overview", overview, "Cluster totals: TaskManagers, slots, jobs", schemas.OVERVIEW_SCHEMA,
          tag="cluster"),
    Route("GET", "/taskmanagers", task_managers, "Every registered TaskManager", schemas.TASK_MANAGERS_SCHEMA,
          tag="cluster"),
    Route("GET", "/taskmanagers/{tmid}", task_manager, "One TaskManager with its allocated slots",
          schemas.TASK_MANAGER_SCHEMA, errors=(404,), tag="cluster"),
    Route("GET", "/config", dashboard_config, "What Flink's web dashboard reads first",
          schemas.DASHBOARD_CONFIG_SCHEMA, tag="cluster"),
    Route("GET", "/jobmanager/config", jobmanager_config, "The effective configuration (secrets hidden)",
          schemas.CONFIG_ENTRIES_SCHEMA, tag="cluster"),
]
