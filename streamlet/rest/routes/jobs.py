"""Job routes: list, submit, details, cancel, exceptions, plan, back pressure.

``POST /jobs`` takes, by ``Content-Type``:

* a YAML body (``application/x-yaml``, ``text/yaml``, ``text/plain`` or none): the pipeline;
  query parameters ``base-dir`` (absolute directory that relative ``path:`` values resolve
  against; default: the JobManager's working directory) and ``parallelism``;
* ``multipart/form-data``: a part named ``pipeline`` (the YAML), any number of parts named
  ``file`` whose filenames are relative paths (``udfs.py``, ``mypkg/text.py``), and optional
  ``base-dir`` / ``parallelism`` / ``savepointPath`` / ``allowNonRestoredState`` fields (the same
  names as query parameters of a YAML body, and as keys of a JSON body);
* ``application/json``: ``{"job-graph": {...}}``, a JobGraph planned by the client
  (``streamlet run --taskmanagers``).

It answers 202 ``{"jobUrl": "/jobs/<id>", "jid": "<id>"}``.

Sizes are checked before the body is read when ``Content-Length`` announces it, and while it is
read otherwise (:class:`~streamlet.rest.limits.RestLimits`): the body, the pipeline YAML, each
file and the number of files; the whole body must arrive within ``rest.server.read-timeout``.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import orjson
import aiohttp
from aiohttp import web

from streamlet.errors import PipelineDefinitionError, PipelineLimitError
from streamlet.rest.base import NotFoundError
from streamlet.rest.limits import RestLimits
from streamlet.rest.responses import gateway_of, json_response, limits_of
from streamlet.rest import schemas
from streamlet.rest.schemas import JobSubmission
from streamlet.rest.spec import ID_SCHEMA, Param, Route


async def list_jobs(request: web.Request) -> web.StreamResponse:
    """``GET /jobs``: ``{"jobs": [{"id", "status"}]}`` (Flink's JobIdsWithStatusOverview)."""
    return json_response({"jobs": [{"id": j.jid, "status": j.state} for j in gateway_of(request).jobs()]})


async def jobs_overview(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/overview``."""
    return json_response({"jobs": [j.to_overview_json() for j in gateway_of(request).jobs()]})


async def job_details(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid``: state, timestamps, vertices with status and metrics, plan."""
    return json_response(gateway_of(request).job(request.match_info["jobid"]).to_details_json())


async def job_plan(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/plan``."""
    return json_response({"plan": gateway_of(request).job(request.match_info["jobid"]).plan})


async def job_exceptions(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/exceptions``: root cause and every failure."""
    return json_response(gateway_of(request).job_exceptions(request.match_info["jobid"]).to_json())


async def vertex_backpressure(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/vertices/:vertexid/backpressure``: Flink's ok/low/high levels."""
    gw = gateway_of(request)
    return json_response(gw.vertex_backpressure(request.match_info["jobid"], request.match_info["vertexid"]).to_json())


async def vertex_watermarks(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/vertices/:vertexid/watermarks``: ``[{"id": "<subtask>.currentInputWatermark",
    "value": "<ms>"}]`` (and ``.currentOutputWatermark``), Flink's metric list; -9223372036854775808
    means no watermark yet."""
    gw = gateway_of(request)
    return json_response(gw.vertex_watermarks(request.match_info["jobid"], request.match_info["vertexid"]))


def parse_key(text: str) -> Any:
    """A key from a query string: JSON when it parses as a JSON scalar or list (``42``, ``"42"``,
    ``[1, "a"]`` for a composite key), else the text itself (``alice``)."""
    try:
        key = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(key, dict):
        raise web.HTTPBadRequest(text=f"key {text!r} is a JSON object; a key is a value or a list of values")
    return key


async def query_state(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/state/:node?key=K``: the live value of a keyed node's state for one key.

    Read from the subtask that owns the key's key group, over the RPC: the value *now*, including
    updates no checkpoint covers yet (a failure may roll it back). ``key`` is JSON when it parses
    as a JSON value (``42``, ``"42"``, ``[1, "a"]``), else the text itself."""
    if "key" not in request.query:
        raise web.HTTPBadRequest(text="the query parameter 'key' is missing; e.g. ?key=42 or ?key=alice")
    key = parse_key(request.query["key"])
    answer = await gateway_of(request).query_state(request.match_info["jobid"], request.match_info["node"], key)
    return json_response(answer)


async def vertex_details(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:jobid/vertices/:vertexid``: the vertex's subtasks, where they run, their metrics."""
    gw = gateway_of(request)
    job = gw.job(request.match_info["jobid"])
    vid = request.match_info["vertexid"]
    for v in job.vertices:
        if v.id == vid:
            return json_response({"id": v.id, "name": v.name, "parallelism": v.parallelism,
                                  "maxParallelism": v.max_parallelism, "now": job.now,
                                  "subtasks": [s.to_json(job.now) for s in v.subtasks]})
    raise NotFoundError(f"job {job.jid!r} has no vertex {vid!r}; GET /jobs/{job.jid} lists its vertices")


async def cancel_job(request: web.Request) -> web.StreamResponse:
    """``PATCH /jobs/:jobid?mode=cancel``: 202 ``{}``."""
    mode = request.query.get("mode", "cancel")
    if mode != "cancel":
        raise web.HTTPBadRequest(text=f"mode {mode!r} is not supported; use mode=cancel")
    gateway_of(request).cancel(request.match_info["jobid"])
    return json_response({}, status=202)


def _flag(value: str | None, name: str) -> bool:
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise web.HTTPBadRequest(text=f"{name} must be true or false, got {value!r}")


def _parallelism(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        p = int(value)
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text=f"parallelism must be a positive integer, got {value!r}") from None
    if p < 1:
        raise web.HTTPBadRequest(text=f"parallelism must be a positive integer, got {value!r}")
    return p


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PipelineDefinitionError(f"{what} is not UTF-8 text; send the pipeline YAML") from None


def _too_large(what: str, size: str, limit: int, key: str) -> PipelineLimitError:
    return PipelineLimitError(f"{what} has {size} bytes; the limit is {limit} ({key}): send less, or raise {key} "
                              "in the jobmanager's configuration", "POST /jobs", key=key, status=413)


async def _read_limited(read: Any, limit: int, key: str, what: str) -> bytes:
    """Chunks from ``read(n)`` until it returns b""; refused as soon as they pass ``limit``."""
    buf = bytearray()
    while chunk := await read(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise _too_large(what, f"more than {limit}", limit, key)
    return bytes(buf)


async def _read_multipart(request: web.Request, limits: RestLimits) -> JobSubmission:
    yaml_text: str | None = None
    filename = "<rest>"
    files: dict[str, bytes] = {}
    fields: dict[str, str] = {}
    try:
        reader = await request.multipart()
    except ValueError as exc:  # aiohttp: no boundary in the Content-Type
        raise web.HTTPBadRequest(text=f"malformed multipart body: {exc}; let the client set the boundary") from None
    total = 0
    while True:
        try:
            part = await reader.next()
        except ValueError as exc:  # aiohttp: a part without its headers, a wrong boundary
            raise web.HTTPBadRequest(text=f"malformed multipart body: {exc}") from None
        if part is None:
            break
        if not isinstance(part, aiohttp.BodyPartReader):
            raise web.HTTPBadRequest(text="nested multipart bodies are not supported")
        if part.name in ("file", "files"):
            if len(files) >= limits.max_files:
                raise PipelineLimitError(
                    f"more than {limits.max_files} files were submitted with the job; the limit is "
                    f"{limits.max_files} (web.upload.max-files): package them, or raise web.upload.max-files "
                    "in the jobmanager's configuration", "POST /jobs", key="web.upload.max-files", status=413)
            limit, key, what = limits.max_file_size, "web.upload.max-file-size", f"file {part.filename!r}"
        elif part.name == "pipeline":
            limit, key, what = limits.max_yaml_bytes, "pipeline.yaml.max-bytes", "the pipeline part"
        else:
            limit, key, what = 64 * 1024, "rest.server.max-content-length", f"field {part.name!r}"
        raw = await _read_limited(part.read_chunk, limit, key, what)
        total += len(raw)
        if total > limits.max_content_length:
            raise _too_large("the request body", f"more than {limits.max_content_length}",
                             limits.max_content_length, "rest.server.max-content-length")
        try:
            data = part.decode(raw)
        except (ValueError, RuntimeError) as exc:  # an unknown or broken Content-Transfer-Encoding
            raise web.HTTPBadRequest(text=f"cannot decode multipart part {part.name!r}: {exc}") from None
        if part.name == "pipeline":
            yaml_text = _text(bytes(data), "the pipeline part")
            filename = part.filename or filename
        elif part.name in ("file", "files"):
            if not part.filename:
                raise web.HTTPBadRequest(text="a 'file' part needs a filename (its path relative to the job directory)")
            # some clients percent-encode the '/' of a package path in the filename
            files[urllib.parse.unquote(part.filename)] = bytes(data)
        elif part.name:
            fields[part.name] = _text(bytes(data), f"field {part.name!r}")
    if yaml_text is None:
        raise web.HTTPBadRequest(text="the multipart body has no 'pipeline' part; send the YAML as part 'pipeline'")
    return JobSubmission(pipeline_yaml=yaml_text, files=files, base_dir=fields.get("base-dir") or None,
                         parallelism=_parallelism(fields.get("parallelism")), filename=filename,
                         savepoint_path=fields.get("savepointPath") or None,
                         allow_non_restored_state=_flag(fields.get("allowNonRestoredState"), "allowNonRestoredState"))


async def _read_submission(request: web.Request, limits: RestLimits) -> JobSubmission:
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        return await _read_multipart(request, limits)
    if ctype == "application/json":
        data = await _read_limited(request.content.read, limits.max_content_length,
                                   "rest.server.max-content-length", "the request body")
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("job-graph"), dict):
            raise web.HTTPBadRequest(text='a JSON body must be {"job-graph": {...}}; send YAML as application/x-yaml')
        savepoint = body.get("savepointPath")
        if savepoint is not None and not isinstance(savepoint, str):
            raise web.HTTPBadRequest(text=f"savepointPath must be a string, got {savepoint!r}")
        allow = body.get("allowNonRestoredState", False)
        if not isinstance(allow, bool):
            raise web.HTTPBadRequest(text=f"allowNonRestoredState must be true or false, got {allow!r}")
        return JobSubmission(job_graph=body["job-graph"], filename="<job graph>", savepoint_path=savepoint,
                             allow_non_restored_state=allow)
    limit = min(limits.max_yaml_bytes, limits.max_content_length)
    key = "pipeline.yaml.max-bytes" if limit == limits.max_yaml_bytes else "rest.server.max-content-length"
    data = await _read_limited(request.content.read, limit, key, "the pipeline YAML")
    if not data.strip():
        raise web.HTTPBadRequest(text="empty request body; send the pipeline YAML (or multipart with 'pipeline')")
    return JobSubmission(pipeline_yaml=_text(data, "the body"), base_dir=request.query.get("base-dir"),
                         parallelism=_parallelism(request.query.get("parallelism")),
                         filename=request.query.get("filename", "<rest>"),
                         savepoint_path=request.query.get("savepointPath") or None,
                         allow_non_restored_state=_flag(request.query.get("allowNonRestoredState"),
                                                        "allowNonRestoredState"))


async def _submission(request: web.Request) -> JobSubmission:
    """The submission a ``POST /jobs`` (or ``/jobs/validate``) request carries, within the limits."""
    limits = limits_of(request)
    size = request.content_length
    if size is not None and size > limits.max_content_length:
        raise _too_large("the request body", str(size), limits.max_content_length, "rest.server.max-content-length")
    if (size is not None and size > limits.max_yaml_bytes and not request.content_type.startswith("multipart/")
            and request.content_type != "application/json"):
        raise _too_large("the pipeline YAML", str(size), limits.max_yaml_bytes, "pipeline.yaml.max-bytes")
    try:
        async with asyncio.timeout(limits.read_timeout):
            return await _read_submission(request, limits)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive within {limits.read_timeout:g}s (rest.server.read-timeout); "
                 "send it faster, or raise rest.server.read-timeout in the jobmanager's configuration") from None


async def submit_job(request: web.Request) -> web.StreamResponse:
    """``POST /jobs`` (see the module docstring)."""
    job_id = await gateway_of(request).submit(await _submission(request))
    return json_response({"jobUrl": f"/jobs/{job_id}", "jid": job_id}, status=202)


def error_details(exc: PipelineDefinitionError) -> dict[str, Any]:
    """Where a definition error is: ``{file, path, node, key, message}`` from its ``where``
    (``"pipeline.yaml: transforms.counts.key_by"``: file ``pipeline.yaml``, node ``counts``, key
    ``key_by``); parts the error does not name are None."""
    where = exc.where or ""
    file, sep, path = where.partition(": ")
    if not sep:
        file, path = (where, "") if where.endswith((".yaml", ".yml", ">")) else ("", where)
    parts = path.split(".") if path else []
    node = parts[1] if len(parts) > 1 and parts[0] in ("sources", "transforms", "sinks") else None
    key = ".".join(parts[2:]) if node is not None and len(parts) > 2 else (path if node is None and path else None)
    return {"file": file or None, "path": path or None, "node": node, "key": key or None,
            "message": exc.message}


async def validate_job(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/validate``: what ``streamlet validate`` does, over REST (the dashboard's submit page).

    Takes the bodies ``POST /jobs`` takes; plans the pipeline without running it and answers 200
    ``{"plan": <the plan JSON of GET /jobs/:id/plan, jid null>}``, or 400 ``{"errors": [message],
    "details": [{file, path, node, key, message}]}`` naming where the pipeline is wrong.
    """
    try:
        plan = await gateway_of(request).validate(await _submission(request))
    except PipelineLimitError:
        raise
    except PipelineDefinitionError as exc:
        return json_response({"errors": [str(exc)], "details": [error_details(exc)]}, status=400)
    return json_response({"plan": plan})


_JOB = {"jobid": ID_SCHEMA}
_VERTEX = {"jobid": ID_SCHEMA, "vertexid": ID_SCHEMA}
_YAML = {"type": "string", "minLength": 1}

ROUTES = [
    Route("GET", "/jobs", list_jobs, "Ids and states of every job", schemas.JOB_IDS_SCHEMA, tag="jobs"),
    Route("POST", "/jobs", submit_job, "Submit a pipeline (YAML, multipart with files, or a planned job graph)",
          schemas.SUBMIT_RESPONSE_SCHEMA, status=202, errors=(400, 408, 413, 503), tag="jobs",
          params=(Param("base-dir", "absolute directory relative path: values resolve against"),
                  Param("parallelism", "default parallelism of nodes that set none",
                        {"type": "integer", "minimum": 1}),
                  Param("filename", "name of the pipeline shown in errors"),
                  Param("savepointPath", "start from this savepoint or retained checkpoint"),
                  Param("allowNonRestoredState", "drop savepoint state of operators the pipeline lacks",
                        {"type": "string", "enum": ["true", "false"]})),
          request={"application/x-yaml": _YAML, "text/plain": _YAML,
                   "multipart/form-data": {"type": "object", "required": ["pipeline"],
                                           "properties": {"pipeline": {"type": "string", "format": "binary"},
                                                          "file": {"type": "array",
                                                                   "items": {"type": "string", "format": "binary"}},
                                                          "base-dir": {"type": "string"},
                                                          "parallelism": {"type": "string"},
                                                          "savepointPath": {"type": "string"},
                                                          "allowNonRestoredState": {"type": "string"}}},
                   "application/json": {"type": "object", "required": ["job-graph"],
                                        "properties": {"job-graph": {"type": "object"},
                                                       "savepointPath": {"type": "string"},
                                                       "allowNonRestoredState": {"type": "boolean"}}}}),
    Route("POST", "/jobs/validate", validate_job, "Plan a pipeline without running it (streamlet validate)",
          schemas.VALIDATE_RESPONSE_SCHEMA, errors=(400, 408, 413, 503), tag="jobs",
          params=(Param("base-dir", "absolute directory relative path: values resolve against"),
                  Param("parallelism", "default parallelism of nodes that set none",
                        {"type": "integer", "minimum": 1}),
                  Param("filename", "name of the pipeline shown in errors")),
          request={"application/x-yaml": _YAML, "text/plain": _YAML}),
    Route("GET", "/jobs/overview", jobs_overview, "Every job with its state, times and task counts",
          schemas.JOBS_OVERVIEW_SCHEMA, tag="jobs"),
    Route("GET", "/jobs/{jobid}", job_details, "One job: state, timestamps, vertices with metrics, plan",
          schemas.JOB_DETAILS_SCHEMA, errors=(404,), path_params=_JOB, tag="jobs"),
    Route("PATCH", "/jobs/{jobid}", cancel_job, "Cancel a job", schemas.EMPTY_SCHEMA, status=202,
          errors=(400, 404), path_params=_JOB, tag="jobs",
          params=(Param("mode", "only cancel", {"type": "string", "enum": ["cancel"]}),)),
    Route("GET", "/jobs/{jobid}/plan", job_plan, "The job's plan (Flink's plan JSON)", schemas.PLAN_SCHEMA,
          errors=(404,), path_params=_JOB, tag="jobs"),
    Route("GET", "/jobs/{jobid}/exceptions", job_exceptions, "Failures of the job, root cause first",
          schemas.EXCEPTIONS_SCHEMA, errors=(404,), path_params=_JOB, tag="jobs"),
    Route("GET", "/jobs/{jobid}/vertices/{vertexid}", vertex_details, "One vertex with its subtasks",
          schemas.VERTEX_DETAILS_SCHEMA, errors=(404,), path_params=_VERTEX, tag="jobs"),
    Route("GET", "/jobs/{jobid}/vertices/{vertexid}/backpressure", vertex_backpressure,
          "Back pressure of a vertex's subtasks (ok/low/high)", schemas.BACKPRESSURE_SCHEMA, errors=(404,),
          path_params=_VERTEX, tag="jobs"),
    Route("GET", "/jobs/{jobid}/state/{node}", query_state,
          "Live keyed state of a node for one key (queryable state; not yet checkpointed)",
          schemas.STATE_SCHEMA, errors=(400, 404, 409, 503), path_params=_JOB, tag="jobs",
          params=(Param("key", "the key: JSON (42, \"42\", [1, \"a\"]) or plain text", required=True),)),
    Route("GET", "/jobs/{jobid}/vertices/{vertexid}/watermarks", vertex_watermarks,
          "Input and output watermarks of a vertex's subtasks", schemas.WATERMARKS_SCHEMA, errors=(404,),
          path_params=_VERTEX, tag="jobs"),
]
