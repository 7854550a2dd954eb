"""The REST app against a fake gateway: Flink shapes, /v1 paths, errors as JSON, auth."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from streamlet.errors import PipelineDefinitionError
from streamlet.rest.app import create_app
from streamlet.rest.base import NotFoundError, UnavailableError
from streamlet.rest.schemas import (
    ClusterOverview, ExceptionEntry, JobExceptions, JobInfo, JobSubmission, SubtaskBackpressure, TaskManagerInfo,
    TaskMetricsInfo, VertexBackpressure, backpressure_level,
)

JID = "a" * 32


class FakeGateway:
    """Knows one job; records submissions and cancellations."""

    def __init__(self) -> None:
        self.submissions: list[JobSubmission] = []
        self.cancelled: list[str] = []

    def overview(self) -> ClusterOverview:
        return ClusterOverview(1, 4, 2, {"running": 1}, "0.1.0")

    def task_managers(self) -> list[TaskManagerInfo]:
        return [TaskManagerInfo("tm", "127.0.0.1:7000", 4, 2, 10, {"cpu_cores": 2}, [{"index": 0, "jobId": JID}])]

    def task_manager(self, tm: str) -> TaskManagerInfo:
        if tm != "tm":
            raise NotFoundError(f"taskmanager {tm!r} not found")
        return self.task_managers()[0]

    def _job(self) -> JobInfo:
        return JobInfo(JID, "job", "RUNNING", "streaming", 1000, -1, 1500, 128, {"INITIALIZING": 1000}, [],
                       {"jid": JID, "nodes": []}, None, 2000)

    def jobs(self) -> list[JobInfo]:
        return [self._job()]

    def job(self, job_id: str) -> JobInfo:
        if job_id != JID:
            raise NotFoundError(f"job {job_id!r} not found")
        return self._job()

    def job_exceptions(self, job_id: str) -> JobExceptions:
        self.job(job_id)
        return JobExceptions([ExceptionEntry("boom", 5, "out (1/1)", "h:1", "tm")])

    def vertex_backpressure(self, job_id: str, vertex_id: str) -> VertexBackpressure:
        self.job(job_id)
        return VertexBackpressure(7, [SubtaskBackpressure(0, 0.05, 0.9, 0.05), SubtaskBackpressure(1, 0.3, 0, 0.7)])

    async def submit(self, submission: JobSubmission) -> str:
        if submission.pipeline_yaml and "bad" in submission.pipeline_yaml:
            raise PipelineDefinitionError("unknown key 'bad'", "<rest>: bad")
        if submission.pipeline_yaml and "late" in submission.pipeline_yaml:
            raise UnavailableError("the jobmanager is not accepting jobs (starting or shutting down); retry later")
        self.submissions.append(submission)
        return JID

    def cancel(self, job_id: str) -> None:
        self.job(job_id)
        self.cancelled.append(job_id)

    def configuration(self) -> dict[str, Any]:
        return {"rest.port": 8081, "security.auth.token": "******"}


def run(body: Callable[[TestClient, FakeGateway], Awaitable[None]], token: str | None = None) -> None:
    async def main() -> None:
        gw = FakeGateway()
        async with TestClient(TestServer(create_app(gw, token))) as client:
            await body(client, gw)

    asyncio.run(main())


def test_flink_shapes_and_v1_paths() -> None:
    async def body(c: TestClient, gw: FakeGateway) -> None:
        for prefix in ("", "/v1"):
            r = await c.get(prefix + "/overview")
            assert r.status == 200 and (await r.json())["slots-available"] == 2
        jobs = await (await c.get("/jobs")).json()
        assert jobs == {"jobs": [{"id": JID, "status": "RUNNING"}]}
        ov = (await (await c.get("/v1/jobs/overview", json={})).json())["jobs"][0]
        assert ov["jid"] == JID and ov["end-time"] == -1 and ov["duration"] == 1000 and ov["tasks"]["total"] == 0
        details = await (await c.get(f"/jobs/{JID}")).json()
        assert details["state"] == "RUNNING" and details["job-type"] == "STREAMING" and details["vertices"] == []
        assert (await (await c.get(f"/jobs/{JID}/plan")).json())["plan"]["jid"] == JID
        exc = await (await c.get(f"/jobs/{JID}/exceptions")).json()
        assert exc["root-exception"] == "boom" and exc["all-exceptions"][0]["taskManagerId"] == "tm"
        bp = await (await c.get(f"/jobs/{JID}/vertices/v/backpressure")).json()
        assert bp["backpressure-level"] == "low" and [s["backpressure-level"] for s in bp["subtasks"]] == ["ok", "low"]
        tms = await (await c.get("/taskmanagers")).json()
        assert tms["taskmanagers"][0]["slotsNumber"] == 4 and tms["taskmanagers"][0]["dataPort"] == 7000
        assert (await (await c.get("/taskmanagers/tm")).json())["allocatedSlots"][0]["jobId"] == JID
        r = await c.patch(f"/jobs/{JID}?mode=cancel", json={})
        assert r.status == 202 and await r.json() == {} and gw.cancelled == [JID]
        conf = await (await c.get("/jobmanager/config")).json()
        assert {"key": "security.auth.token", "value": "******"} in conf
        assert "flink-version" in await (await c.get("/config")).json()

    run(body)


def test_submission_formats() -> None:
    async def body(c: TestClient, gw: FakeGateway) -> None:
        r = await c.post("/jobs?base-dir=/data&parallelism=3", data=b"name: x", headers={"Content-Type": "text/yaml"})
        assert r.status == 202 and (await r.json()) == {"jobUrl": f"/jobs/{JID}", "jid": JID}
        s = gw.submissions[-1]
        assert s.pipeline_yaml == "name: x" and s.base_dir == "/data" and s.parallelism == 3
        form = aiohttp.FormData()
        form.add_field("pipeline", b"name: y", filename="p.yaml")
        form.add_field("file", b"X = 1\n", filename="mypkg/mod.py")
        form.add_field("base-dir", "/srv")
        r = await c.post("/jobs", data=form)
        assert r.status == 202
        s = gw.submissions[-1]
        assert s.pipeline_yaml == "name: y" and s.filename == "p.yaml" and s.files == {"mypkg/mod.py": b"X = 1\n"}
        assert s.base_dir == "/srv"
        r = await c.post("/jobs", json={"job-graph": {"name": "g"}})
        assert r.status == 202 and gw.submissions[-1].job_graph == {"name": "g"}

    run(body)


def test_errors_are_json_with_4xx() -> None:
    async def body(c: TestClient, gw: FakeGateway) -> None:
        cases = [("POST", "/jobs", b"bad: 1", 400, "unknown key 'bad'"), ("POST", "/jobs", b"  ", 400, "empty"),
                 ("GET", "/jobs/" + "0" * 32, None, 404, "not found"), ("DELETE", "/v1/jobs", None, 405, "not allowed"),
                 ("GET", "/nope", None, 404, "not found"), ("PATCH", f"/jobs/{JID}?mode=stop", None, 400, "mode"),
                 ("GET", "/taskmanagers/zz", None, 404, "taskmanager")]
        for method, path, data, status, text in cases:
            r = await c.request(method, path, data=data)
            body_ = await r.json()
            assert r.status == status, (path, body_)
            assert text in body_["errors"][0], (path, body_)
        form = aiohttp.FormData()
        form.add_field("file", b"x", filename="a.py")
        r = await c.post("/jobs", data=form)
        assert r.status == 400 and "no 'pipeline' part" in (await r.json())["errors"][0]

    run(body)


def test_bearer_token() -> None:
    async def body(c: TestClient, gw: FakeGateway) -> None:
        r = await c.get("/overview")
        assert r.status == 401 and (await r.json())["errors"] and r.headers["WWW-Authenticate"] == "Bearer"
        r = await c.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
        assert r.status == 401
        r = await c.get("/jobs", headers={"Authorization": "Bearer s3cret"})
        assert r.status == 200

    run(body, token="s3cret")


def test_backpressure_levels_are_flinks() -> None:
    assert [backpressure_level(r) for r in (0.0, 0.0999, 0.1, 0.5, 0.5001, 1.0)] == ["ok", "ok", "low", "low",
                                                                                        "high", "high"]
    assert TaskMetricsInfo(records_in=3).to_json()["read-records"] == 3


def test_no_multipart_boundary_is_400_and_a_stopping_jobmanager_503() -> None:
    async def body(c: TestClient, gw: FakeGateway) -> None:
        r = await c.post("/jobs", data=b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
        assert r.status == 400 and "boundary" in (await r.json())["errors"][0]
        r = await c.post("/jobs", data=b"name: late", headers={"Content-Type": "application/x-yaml"})
        assert r.status == 503 and "not accepting jobs" in (await r.json())["errors"][0]

    run(body)
