"""Errors of the control-plane RPC."""

from __future__ import annotations

from streamlet.errors import FatalError, RetryableError


class RpcError(RetryableError):
    """A request could not be carried out over the RPC connection."""


class RpcTimeoutError(RpcError):
    """No response within the request timeout (``rpc.ask-timeout``)."""


class ConnectionClosedError(RpcError):
    """The RPC connection closed before the response arrived."""


class RemoteError(RpcError):
    """The peer answered a request with an ``Error`` message."""

    def __init__(self, message: str, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


class TlsHandshakeResetError(RpcError):
    """The JobManager closed the connection during the TLS handshake.

    What a JobManager does when it does not trust this process's certificate (it sends no reason);
    retryable once (a JobManager may be restarting), a refusal when it keeps happening.
    """


class CodecError(FatalError):
    """A frame is not a valid envelope (not JSON, unknown type, other protocol version)."""


class RegistrationRefusedError(FatalError):
    """The JobManager refused this TaskManager (e.g. a wrong cluster token)."""
