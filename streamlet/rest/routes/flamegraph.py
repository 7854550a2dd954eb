"""``GET /jobs/:jobid/vertices/:vertexid/flamegraph``: a flame graph of a vertex's Python stacks
(Flink's endpoint, query parameters and answer; see
:mod:`streamlet.runtime.jobmanager.flame_graph` for how samples are taken)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streamlet.rest.responses import gateway_of, json_response
from streamlet.rest.spec import ID_SCHEMA, Param, Route

TYPES = ("FULL", "ON_CPU", "OFF_CPU")

#: a node of the tree: its children are nodes again (not spelt out: the document has no recursion)
_NODE: dict[str, Any] = {"type": "object", "required": ["name", "value", "children"],
                         "properties": {"name": {"type": "string"}, "value": {"type": "integer"},
                                        "children": {"type": "array", "items": {"type": "object"}}}}
#: ``endTimestamp``: ms of the samples' end, or -1 terminated, -2 disabled, -3 waiting (no ``data`` then)
FLAME_GRAPH_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["endTimestamp"],
    "properties": {"endTimestamp": {"type": "integer"}, "data": _NODE},
}


async def vertex_flame_graph(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/vertices/:vertexid/flamegraph?type=FULL|ON_CPU|OFF_CPU&subtaskindex=N``.

    The first request starts sampling the vertex's subtasks (a few seconds) and answers
    ``{"endTimestamp": -3}``; poll until ``data`` is there.  ``endTimestamp`` -1: the vertex does
    not run (any more); -2: flame graphs are disabled (``rest.flamegraph.enabled``).
    """
    kind = request.query.get("type", "FULL").upper()
    if kind not in TYPES:
        raise web.HTTPBadRequest(text=f"type {request.query.get('type')!r} is not a flame graph type; "
                                      f"use one of {', '.join(TYPES)}")
    raw = request.query.get("subtaskindex")
    subtask = None
    if raw not in (None, ""):
        try:
            subtask = int(raw)  # type: ignore[arg-type]
        except ValueError:
            raise web.HTTPBadRequest(text=f"subtaskindex must be an integer, got {raw!r}") from None
        if subtask < 0:
            raise web.HTTPBadRequest(text=f"subtaskindex must not be negative, got {raw!r}")
    answer = gateway_of(request).vertex_flame_graph(request.match_info["jobid"], request.match_info["vertexid"],
                                                    kind, subtask)
    return json_response(answer)


ROUTES = [
    Route("GET", "/jobs/{jobid}/vertices/{vertexid}/flamegraph", vertex_flame_graph,
          "Flame graph of a vertex's Python stacks, sampled on demand", FLAME_GRAPH_SCHEMA, errors=(400, 404),
          path_params={"jobid": ID_SCHEMA, "vertexid": ID_SCHEMA}, tag="jobs",
          params=(Param("type", "FULL (default), ON_CPU or OFF_CPU", {"type": "string", "enum": list(TYPES)}),
                  Param("subtaskindex", "only this subtask's samples", {"type": "integer", "minimum": 0}))),
]
