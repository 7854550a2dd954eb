"""Job routes: list, submit, details, cancel, exceptions, plan, back pressure.

``POST /jobs`` takes, by ``Content-Type``:

* a YAML body (``application/x-yaml``, ``text/yaml``, ``text/plain`` or none): the pipeline;
  query parameters ``base-dir`` (absolute directory that relative ``path:`` values resolve
  against; default: the JobManager's working directory) and ``parallelism``;
* ``multipart/form-data``: a part named ``pipeline`` (the YAML), any number of parts named
  ``file`` whose filenames are relative paths (``udfs.py``, ``mypkg/text.py``), and optional
  ``base-dir`` / ``parallelism`` fields;
* ``application/json``: ``{"job-graph": {...}}``, a JobGraph planned by the client
  (``streamlet run --taskmanagers``).

It answers 202 ``{"jobUrl": "/jobs/<id>", "jid": "<id>"}``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson
import aiohttp
from aiohttp import web

from streamlet.errors import PipelineDefinitionError
from streamlet.rest.base import NotFoundError
from streamlet.rest.responses import gateway_of, json_response
from streamlet.rest.schemas import JobSubmission


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


async def _read_multipart(request: web.Request) -> JobSubmission:
    yaml_text: str | None = None
    filename = "<rest>"
    files: dict[str, bytes] = {}
    fields: dict[str, str] = {}
    try:
        reader = await request.multipart()
    except ValueError as exc:  # aiohttp: no boundary in the Content-Type
        raise web.HTTPBadRequest(text=f"malformed multipart body: {exc}; let the client set the boundary") from None
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, aiohttp.BodyPartReader):
            raise web.HTTPBadRequest(text="nested multipart bodies are not supported")
        data = await part.read(decode=True)
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
                         parallelism=_parallelism(fields.get("parallelism")), filename=filename)


async def submit_job(request: web.Request) -> web.StreamResponse:
    """``POST /jobs`` (see the module docstring)."""
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        submission = await _read_multipart(request)
    elif ctype == "application/json":
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("job-graph"), dict):
            raise web.HTTPBadRequest(text='a JSON body must be {"job-graph": {...}}; send YAML as application/x-yaml')
        submission = JobSubmission(job_graph=body["job-graph"], filename="<job graph>")
    else:
        data = await request.read()
        if not data.strip():
            raise web.HTTPBadRequest(text="empty request body; send the pipeline YAML (or multipart with 'pipeline')")
        submission = JobSubmission(pipeline_yaml=_text(data, "the body"), base_dir=request.query.get("base-dir"),
                                   parallelism=_parallelism(request.query.get("parallelism")),
                                   filename=request.query.get("filename", "<rest>"))
    job_id = await gateway_of(request).submit(submission)
    return json_response({"jobUrl": f"/jobs/{job_id}", "jid": job_id}, status=202)


ROUTES = [
    ("GET", "/jobs", list_jobs),
    ("POST", "/jobs", submit_job),
    ("GET", "/jobs/overview", jobs_overview),
    ("GET", "/jobs/{jobid}", job_details),
    ("PATCH", "/jobs/{jobid}", cancel_job),
    ("GET", "/jobs/{jobid}/plan", job_plan),
    ("GET", "/jobs/{jobid}/exceptions", job_exceptions),
    ("GET", "/jobs/{jobid}/vertices/{vertexid}", vertex_details),
    ("GET", "/jobs/{jobid}/vertices/{vertexid}/backpressure", vertex_backpressure),
]
