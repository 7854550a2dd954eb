"""A small blocking REST client of the JobManager, for the CLI and ``streamlet run --taskmanagers``.

Standard library only (urllib), so the CLI starts fast.  Every call has a timeout; an error
answer raises :class:`RestError` with the JobManager's ``errors`` messages.

Example::

    client = RestClient("http://127.0.0.1:8081", token=None)
    job_id = client.submit_yaml(Path("pipeline.yaml"))
    print(client.job(job_id)["state"])
"""

from __future__ import annotations

import json
import time
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from streamlet.errors import RetryableError, StreamletError


class RestError(StreamletError):
    """The JobManager answered with an error status."""

    def __init__(self, status: int, errors: list[str]) -> None:
        self.status = status
        self.errors = errors
        super().__init__("; ".join(errors) if errors else f"http status {status}")


class JobManagerUnreachableError(RetryableError):
    """No answer from the JobManager's REST address."""


def rest_url(address: str, tls: bool = False) -> str:
    """``http://host:port`` (``https://`` with ``tls``) from ``host:port`` or a URL (trailing slash removed)."""
    address = address.rstrip("/")
    if address.startswith(("http://", "https://")):
        return address
    return f"{'https' if tls else 'http'}://{address}"


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out: list[bytes] = []
    for name, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.append(value.encode() + b"\r\n")
    for name, filename, data in files:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n".encode())
        out.append(data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def job_file_name(path: Path) -> str:
    """Where a ``--file`` lands in the job's directory (which goes first on ``sys.path``).

    A module lands at the top (``udfs.py``: ``import udfs`` works); a module inside a package
    (its directory has an ``__init__.py``) keeps the path from its top-level package
    (``mypkg/text.py``: ``import mypkg.text``), so send the package's ``__init__.py`` files too.
    """
    rp = path.resolve()
    parts = [rp.name]
    d = rp.parent
    while (d / "__init__.py").exists() and d.parent != d:
        parts.insert(0, d.name)
        d = d.parent
    return "/".join(parts)


class RestClient:
    """Calls the JobManager's REST API at ``base_url``."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.base_url = rest_url(base_url, tls=ssl_context is not None)
        self.token = token
        self.timeout = timeout
        #: verifies the JobManager's certificate (``security.ssl.rest.truststore``); None: plain HTTP
        self.ssl_context = ssl_context

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One call; returns the decoded JSON answer (None for an empty body)."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self.ssl_context) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                errors = json.loads(raw).get("errors") or [raw.decode(errors="replace")]
            except (ValueError, AttributeError):
                errors = [raw.decode(errors="replace") or exc.reason]
            raise RestError(exc.code, [str(e) for e in errors]) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            from streamlet.rpc.tls import describe_failure

            tls = describe_failure(reason if isinstance(reason, BaseException) else exc, self.base_url,
                                   "security.ssl.rest.truststore")
            if tls is not None:
                raise RestError(0, [tls]) from None
            raise JobManagerUnreachableError(f"cannot reach the jobmanager at {self.base_url}: {reason}; "
                                             "is it running? (--jobmanager URL, rest.port)") from None
        return json.loads(data) if data else None

    # -- calls ------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        return self.request("GET", "/overview")

    def jobs_overview(self) -> list[dict[str, Any]]:
        return self.request("GET", "/jobs/overview")["jobs"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}")

    def exceptions(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}/exceptions")

    def state(self, job_id: str, node_id: str, key: str) -> dict[str, Any]:
        """``GET /jobs/:id/state/:node?key=``: the live keyed state of a node for a key."""
        return self.request("GET", f"/jobs/{job_id}/state/{urllib.parse.quote(node_id, safe='')}",
                            query={"key": key})

    def vertex_watermarks(self, job_id: str, vertex_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/jobs/{job_id}/vertices/{vertex_id}/watermarks")

    def vertex_backpressure(self, job_id: str, vertex_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}/vertices/{vertex_id}/backpressure")

    def cancel(self, job_id: str) -> None:
        self.request("PATCH", f"/jobs/{job_id}", query={"mode": "cancel"})

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}/checkpoints")

    def _wait_operation(self, path: str, trigger: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.request("GET", f"{path}/{trigger}")
            if answer["status"]["id"] == "COMPLETED":
                op = answer["operation"] or {}
                if "failure-cause" in op:
                    raise StreamletError(op["failure-cause"].get("stack-trace") or "the savepoint failed")
                return op
            if time.monotonic() > deadline:
                raise StreamletError(f"no answer within {timeout:g}s (trigger {trigger}); ask again with "
                                     f"GET {path}/{trigger}")
            time.sleep(0.2)

    def savepoint(self, job_id: str, target: str | None, timeout: float = 600.0) -> str:
        """Take a savepoint and wait for it; returns its location."""
        body = json.dumps({"target-directory": target, "cancel-job": False}).encode()
        trigger = self.request("POST", f"/jobs/{job_id}/savepoints", body, "application/json")["request-id"]
        return self._wait_operation(f"/jobs/{job_id}/savepoints", trigger, timeout)["location"]

    def stop(self, job_id: str, target: str | None, drain: bool = False, timeout: float = 600.0) -> str:
        """Stop the job with a savepoint and wait for it; returns its location."""
        body = json.dumps({"targetDirectory": target, "drain": drain}).encode()
        trigger = self.request("POST", f"/jobs/{job_id}/stop", body, "application/json")["request-id"]
        return self._wait_operation(f"/jobs/{job_id}/savepoints", trigger, timeout)["location"]

    def submit_graph(self, graph_json: dict[str, Any]) -> str:
        """Submit a planned JobGraph; returns the job id."""
        body = json.dumps({"job-graph": graph_json}).encode()
        return self.request("POST", "/jobs", body, "application/json")["jid"]

    def submit_yaml(self, pipeline: Path, files: list[Path] | None = None, parallelism: int | None = None,
                    text: str | None = None, savepoint_path: str | None = None,
                    allow_non_restored_state: bool = False) -> str:
        """Submit a pipeline file (and job files) as multipart; returns the job id.

        ``text``, when given, is sent instead of the file's contents (the CLI sends the pipeline
        with its ``${NAME}`` variables resolved).

        The pipeline's directory is sent as ``base-dir``, so relative ``path:`` values resolve
        as with ``streamlet run`` (the JobManager must see the same file system).  See
        :func:`job_file_name` for where each job file lands in the job's directory.
        """
        base = pipeline.resolve().parent
        fields = {"base-dir": str(base)}
        if parallelism is not None:
            fields["parallelism"] = str(parallelism)
        if savepoint_path is not None:
            fields["savepointPath"] = savepoint_path
        if allow_non_restored_state:
            fields["allowNonRestoredState"] = "true"
        parts = [("pipeline", pipeline.name, pipeline.read_bytes() if text is None else text.encode())]
        for f in files or []:
            parts.append(("file", job_file_name(f), f.read_bytes()))
        body, ctype = _multipart(fields, parts)
        return self.request("POST", "/jobs", body, ctype)["jid"]
