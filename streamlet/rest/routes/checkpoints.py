"""Checkpoint, savepoint and stop routes, with Flink's paths and shapes (so Flink's CLI and
tools work):

* ``GET /jobs/:jobid/checkpoints``: counts, summary, latest (completed, savepoint, failed,
  restored) and history with per-checkpoint duration, state size, checkpointed size, alignment;
* ``GET /jobs/:jobid/checkpoints/config``: the job's checkpointing settings;
* ``POST /jobs/:jobid/checkpoints``: trigger a checkpoint now: 202 ``{"request-id": id}``;
  ``GET /jobs/:jobid/checkpoints/:triggerid``: its status;
* ``POST /jobs/:jobid/savepoints`` with ``{"target-directory": dir, "cancel-job": false}``:
  202 ``{"request-id": id}``; ``GET /jobs/:jobid/savepoints/:triggerid``:
  ``{"status": {"id": "IN_PROGRESS" | "COMPLETED"}, "operation": {"location": path} |
  {"failure-cause": {"class", "stack-trace"}}}``;
* ``POST /jobs/:jobid/stop`` with ``{"targetDirectory": dir, "drain": false}``: a savepoint, then
  the job ends FINISHED; answered like a savepoint trigger.

Without ``target-directory`` / ``targetDirectory`` the JobManager's
``execution.checkpointing.savepoint-dir`` is used; with neither the request is refused (400).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from streamlet.rest.responses import gateway_of, json_response
from streamlet.rest.spec import ID_SCHEMA, Route

_JOB = {"jobid": ID_SCHEMA}
_NUM = {"type": "number"}
_SUMMARY = {"type": "object", "properties": {"min": _NUM, "max": _NUM, "avg": _NUM}}
_ENTRY = {"type": ["object", "null"], "properties": {
    "id": {"type": "integer"}, "status": {"type": "string", "enum": ["COMPLETED", "IN_PROGRESS", "FAILED"]},
    "is_savepoint": {"type": "boolean"}, "trigger_timestamp": {"type": "integer"},
    "end_to_end_duration": _NUM, "state_size": _NUM, "checkpointed_size": _NUM, "alignment_duration": _NUM,
    "num_subtasks": {"type": "integer"}, "num_acknowledged_subtasks": {"type": "integer"},
    "external_path": {"type": "string"}, "failure_message": {"type": "string"}}}
STATS_SCHEMA = {"type": "object", "required": ["counts", "summary", "latest", "history"], "properties": {
    "counts": {"type": "object", "properties": {k: {"type": "integer"} for k in
                                                 ("restored", "total", "in_progress", "completed", "failed")}},
    "summary": {"type": "object", "additionalProperties": _SUMMARY},
    "latest": {"type": "object", "properties": {"completed": _ENTRY, "savepoint": _ENTRY, "failed": _ENTRY,
                                                 "restored": {"type": ["object", "null"]}}},
    "history": {"type": "array", "items": _ENTRY}}}
CONFIG_SCHEMA = {"type": "object", "required": ["mode", "interval", "timeout"], "properties": {
    "mode": {"type": "string"}, "interval": {"type": "integer"}, "timeout": {"type": "integer"},
    "min_pause": {"type": "integer"}, "retained": {"type": "integer"}, "enabled": {"type": "boolean"}}}
TRIGGER_SCHEMA = {"type": "object", "required": ["request-id"], "properties": {"request-id": {"type": "string"}}}
OPERATION_SCHEMA = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "object", "properties": {"id": {"type": "string", "enum": ["IN_PROGRESS", "COMPLETED"]}}},
    "operation": {"type": ["object", "null"]}}}


async def _json_body(request: web.Request) -> dict[str, Any]:
    data = await request.read()
    if not data.strip():
        return {}
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='the body must be a JSON object, e.g. {"target-directory": "/savepoints"}')
    return body


def _opt(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise web.HTTPBadRequest(text=f"{key!r} must be a {kind.__name__}, got {value!r}")
    return value


async def checkpoint_stats(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/checkpoints`` (Flink's shape; see the module docstring)."""
    return json_response(gateway_of(request).checkpoint_stats(request.match_info["jobid"]))


async def checkpoint_config(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/checkpoints/config``."""
    return json_response(gateway_of(request).checkpoint_config(request.match_info["jobid"]))


async def trigger_checkpoint(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/:jobid/checkpoints``: 202 ``{"request-id"}``."""
    await _json_body(request)
    trigger = gateway_of(request).trigger_checkpoint(request.match_info["jobid"])
    return json_response({"request-id": trigger}, status=202)


async def checkpoint_status(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/checkpoints/:triggerid`` and ``/savepoints/:triggerid``."""
    return json_response(gateway_of(request).operation_status(request.match_info["jobid"],
                                                              request.match_info["triggerid"]))


async def savepoint_status(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/savepoints/:triggerid``: a savepoint's or stop's status."""
    return await checkpoint_status(request)


async def trigger_savepoint(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/:jobid/savepoints``: 202 ``{"request-id"}``."""
    body = await _json_body(request)
    target = _opt(body, "target-directory", str, None)
    cancel = _opt(body, "cancel-job", bool, False)
    trigger = gateway_of(request).trigger_savepoint(request.match_info["jobid"], target, stop=cancel)
    return json_response({"request-id": trigger}, status=202)


async def stop_job(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/:jobid/stop``: 202 ``{"request-id"}``."""
    body = await _json_body(request)
    target = _opt(body, "targetDirectory", str, None)
    drain = _opt(body, "drain", bool, False)
    trigger = gateway_of(request).trigger_savepoint(request.match_info["jobid"], target, stop=True, drain=drain)
    return json_response({"request-id": trigger}, status=202)


ROUTES = [
    Route("GET", "/jobs/{jobid}/checkpoints", checkpoint_stats, "Checkpoint counts, latest and history of a job",
          STATS_SCHEMA, errors=(404,), path_params=_JOB, tag="checkpoints"),
    Route("POST", "/jobs/{jobid}/checkpoints", trigger_checkpoint, "Trigger a checkpoint now", TRIGGER_SCHEMA,
          status=202, errors=(400, 404), path_params=_JOB, tag="checkpoints"),
    Route("GET", "/jobs/{jobid}/checkpoints/config", checkpoint_config, "The job's checkpointing settings",
          CONFIG_SCHEMA, errors=(404,), path_params=_JOB, tag="checkpoints"),
    Route("GET", "/jobs/{jobid}/checkpoints/{triggerid}", checkpoint_status, "Status of a checkpoint trigger",
          OPERATION_SCHEMA, errors=(404,), path_params=_JOB, tag="checkpoints"),
    Route("POST", "/jobs/{jobid}/savepoints", trigger_savepoint, "Trigger a savepoint (optionally cancel after it)",
          TRIGGER_SCHEMA, status=202, errors=(400, 404), path_params=_JOB, tag="checkpoints",
          request={"application/json": {"type": "object", "properties": {
              "target-directory": {"type": "string"}, "cancel-job": {"type": "boolean"}}}}),
    Route("GET", "/jobs/{jobid}/savepoints/{triggerid}", savepoint_status, "Status of a savepoint or stop",
          OPERATION_SCHEMA, errors=(404,), path_params=_JOB, tag="checkpoints"),
    Route("POST", "/jobs/{jobid}/stop", stop_job, "Stop the job with a savepoint", TRIGGER_SCHEMA, status=202,
          errors=(400, 404), path_params=_JOB, tag="checkpoints",
          request={"application/json": {"type": "object", "properties": {
              "targetDirectory": {"type": "string"}, "drain": {"type": "boolean"}}}}),
]
