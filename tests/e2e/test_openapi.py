"""schemathesis against a live JobManager (a ``streamlet jobmanager`` process with a TaskManager
and a running job), driven by the OpenAPI document the JobManager serves.

Bounded: a few examples per operation (``EXAMPLES``), no shrinking phase, one module-scoped
cluster.  For GET operations half of the generated job and vertex ids are replaced by the running
job's, so the handlers of a real job answer too (state queries with generated nodes and keys,
watermarks, back pressure); operations that change a job (cancel, stop, savepoints, checkpoints)
only ever see generated ids (404).

Every answer must: not be a 5xx, carry no stack trace, have a documented status and content
type, and match its documented schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)

from tests.e2e.conftest import Cluster

EXAMPLES = 8
JOB = """
name: probed
parallelism: 1
sources:
  gen: {type: datagen, rate: 200, fields: {id: {kind: sequence}, user: {kind: random, min: 1, max: 5}}}
transforms:
  agg: {input: gen, key_by: user, aggregate: {n: count}}
sinks:
  out: {input: agg, type: blackhole}
"""
_REAL: dict[str, str] = {}


@schemathesis.check
def no_stack_trace(ctx: Any, response: Any, case: Any) -> bool | None:
    """No answer body shows a Python traceback or a source location."""
    text = response.text if isinstance(response.text, str) else ""
    if "Traceback (most recent call last)" in text or 'File "/' in text:
        raise AssertionError(f"{case.method} {case.formatted_path} answered a stack trace: {text[:300]}")
    return None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("openapi"))
    try:
        cluster.jobmanager()
        cluster.taskmanager(2, "-D", "metrics.port=0")
        job = cluster.submit(JOB)
        cluster.wait_state(job, "RUNNING")
        _REAL["jobid"] = job
        _REAL["vertexid"] = cluster.job(job)["vertices"][0]["id"]
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def api_schema(live: Cluster) -> Any:
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{live.rest_port}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_live_api_keeps_its_document(case: Any, live: Cluster) -> None:
    if case.method == "GET" and case.path_parameters:
        for name in ("jobid", "vertexid"):
            value = case.path_parameters.get(name)
            if value and name in _REAL and value[0] in "01234567":
                case.path_parameters[name] = _REAL[name]
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance, no_stack_trace])
