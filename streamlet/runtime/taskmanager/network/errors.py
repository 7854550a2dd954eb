"""Errors of the data plane between TaskManagers.

Every error names the peer (``host:port`` of the other TaskManager's data endpoint).  A lost,
unreachable or stopped peer is retryable: the task fails, the JobMaster restarts the job from its
last checkpoint, and a new connection is opened.  A refused token or an element that cannot be
encoded is fatal: retrying the same thing cannot succeed.
"""

from __future__ import annotations

from streamlet.errors import FatalError, RetryableError


class PeerLostError(RetryableError):
    """The connection to ``peer`` broke (peer process gone, socket error, heartbeat missed).

    Raised by ``RemoteOutputChannel.put`` on every channel of the broken connection, so a task
    blocked on credit fails instead of hanging.
    """

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        super().__init__(f"lost the data connection to taskmanager {peer!r}: {reason}; "
                         "the task fails and the job restarts from its last checkpoint")


class PeerUnreachableError(RetryableError):
    """No data connection to ``peer`` could be opened within the connect timeout."""

    def __init__(self, peer: str, timeout: float, cause: BaseException | None) -> None:
        self.peer = peer
        why = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"could not open a data connection to taskmanager {peer!r} within "
                         f"{timeout:g}s{why}; check that the taskmanager runs and its data port is reachable")


class PeerRefusedError(FatalError):
    """``peer`` refused the data connection (wrong or missing token, or a protocol mismatch)."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        super().__init__(f"taskmanager {peer!r} refused the data connection: {reason}")


class NetworkStoppedError(RetryableError):
    """The local network environment was stopped (the TaskManager shuts down)."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        super().__init__(f"the network environment stopped; channel to taskmanager {peer!r} closed")


class ChannelReleasedError(RetryableError):
    """The output channel was released (its job was unregistered, or a new attempt replaced it)."""

    def __init__(self, peer: str, job_id: str, channel_id: str) -> None:
        self.peer = peer
        super().__init__(f"output channel {channel_id!r} of job {job_id!r} to taskmanager {peer!r} "
                         "was released; a new attempt must open its own channel")


class ElementEncodingError(FatalError):
    """An element cannot be sent: not JSON-serializable by orjson, or larger than a message may be."""


class ProtocolError(FatalError):
    """A peer sent something the data protocol does not allow (a bug or a foreign client)."""
