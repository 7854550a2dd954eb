"""Error hierarchy shared by every package.

Every error raised on purpose by streamlet derives from :class:`StreamletError` and is either
fatal (retrying cannot help: a bad pipeline, a user function that raised) or retryable (a lost
connection).  Messages are lowercase, name the place (file, node id, key) and say how to fix it.
"""

from __future__ import annotations


class StreamletError(Exception):
    """Root of every error streamlet raises on purpose."""


class FatalError(StreamletError):
    """Retrying the same work cannot succeed (bad input, bad user code)."""


class RetryableError(StreamletError):
    """The same work may succeed later (a lost peer, a timeout)."""


class ConfigError(FatalError):
    """A configuration key or value is invalid."""


class PipelineDefinitionError(FatalError):
    """A pipeline definition (YAML or Python API) is invalid.

    ``where`` is the place in the definition, e.g. ``pipeline.yaml: transforms.counts.key_by``.
    The rendered message is ``"<where>: <message>"`` so a user sees the file, node and key first.
    """

    def __init__(self, message: str, where: str = "") -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class PipelineLimitError(PipelineDefinitionError):
    """A pipeline (or a request carrying one) goes past a configured limit.

    ``key`` is the configuration key that raises the limit; ``status`` the HTTP status the REST
    API answers with (413 for sizes, 400 for parallelism and plan sizes).
    """

    def __init__(self, message: str, where: str = "", key: str = "", status: int = 413) -> None:
        self.key = key
        self.status = status
        super().__init__(message, where)


class UserFunctionError(FatalError):
    """A user function (expression or import path) raised on a record.

    Carries the node id, the original exception and the record so the job's failure message lets
    the user reproduce the problem.
    """

    def __init__(self, node_id: str, record: object, cause: BaseException) -> None:
        self.node_id = node_id
        self.record = record
        self.cause = cause
        rec = repr(record)
        if len(rec) > 500:
            rec = rec[:500] + "..."
        super().__init__(
            f"node {node_id!r}: user function raised {type(cause).__name__}: {cause} "
            f"on record {rec}"
        )


def _short_repr(record: object, limit: int = 500) -> str:
    rec = repr(record)
    return rec if len(rec) <= limit else rec[:limit] + "..."


class SinkRecordError(FatalError):
    """A sink cannot write ``record``; raised by a connector, which does not know its node id.

    The task's sink wrapper (:func:`streamlet.connectors.base.named_writer`) turns it into a
    :class:`SinkWriteError` naming the node.
    """

    def __init__(self, record: object, reason: str, fix: str) -> None:
        self.record = record
        self.reason = reason
        self.fix = fix
        super().__init__(f"cannot write record {_short_repr(record)}: {reason}; {fix}")


class SinkWriteError(FatalError):
    """A sink node failed to write: names the node, the record (when known), the reason and the fix."""

    def __init__(self, node_id: str, message: str) -> None:
        self.node_id = node_id
        super().__init__(f"sink {node_id!r}: {message}")


class DecodeError(FatalError):
    """A source could not decode its input: names the node, the file and line, and the fix."""

    def __init__(self, node_id: str, where: str, reason: str, text: str, fix: str) -> None:
        self.node_id = node_id
        self.where = where
        super().__init__(f"source {node_id!r}: cannot decode {where}: {reason}: {_short_repr(text, 200)}; {fix}")


class RecordNotJsonError(FatalError):
    """A node emitted a record that is not a JSON value, and the record must cross a channel.

    Records are JSON values wherever a pipeline runs (embedded or on a cluster), so the same
    pipeline fails the same way in both, naming the node and the record.
    """

    def __init__(self, node_id: str, record: object, cause: BaseException) -> None:
        self.node_id = node_id
        self.record = record
        self.cause = cause
        super().__init__(
            f"node {node_id!r} emitted a record that is not a JSON value ({cause}): {_short_repr(record)}; records must be "
            "JSON values (objects with string keys, arrays, strings, numbers, true/false/null): convert sets "
            "to lists and make keys strings")


class JobFailedError(FatalError):
    """A job ended in state FAILED; the message carries the root cause."""
