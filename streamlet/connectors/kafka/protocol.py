"""The two Kafka requests the exactly-once sink sends itself: FindCoordinator and EndTxn.

librdkafka cannot take over a transaction another producer instance began, but a job restored
from a checkpoint must commit the transactions that checkpoint recorded (Flink resumes them the
same way: it sends EndTxn with the recorded producer id and epoch).  This module sends those
requests over one blocking socket (call it off the event loop), in the non-flexible versions
every broker since Kafka 0.11 understands (FindCoordinator v1, EndTxn v1).
"""

from __future__ import annotations

import socket
import struct

FIND_COORDINATOR = 10
END_TXN = 26
#: error codes the sink tells apart
NONE = 0
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
PRODUCER_FENCED = 90
RETRIABLE = {COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR}


class ProtocolError(Exception):
    """A request failed: ``code`` is the Kafka error code (-1 for a broken connection)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _request(host: str, port: int, api_key: int, version: int, body: bytes, timeout: float) -> bytes:
    header = struct.pack(">hhi", api_key, version, 1) + _string("streamlet")
    frame = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _read(sock, 4))[0]
        data = _read(sock, size)
    return data[4:]  # past the correlation id


def _read(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ProtocolError(-1, "the broker closed the connection")
        out += chunk
    return bytes(out)


def _address(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def find_transaction_coordinator(bootstrap: str, transactional_id: str, timeout: float = 10.0) -> tuple[str, int]:
    """``(host, port)`` of the broker coordinating ``transactional_id``."""
    host, port = _address(bootstrap)
    data = _request(host, port, FIND_COORDINATOR, 1, _string(transactional_id) + b"\x01", timeout)
    _throttle, code = struct.unpack(">ih", data[:6])
    pos = 6
    (n,) = struct.unpack(">h", data[pos:pos + 2])
    pos += 2
    message = data[pos:pos + n].decode(errors="replace") if n > 0 else ""
    pos += max(n, 0)
    if code != NONE:
        raise ProtocolError(code, f"FindCoordinator for {transactional_id!r} failed: error {code} {message}".strip())
    _node, hlen = struct.unpack(">ih", data[pos:pos + 6])
    pos += 6
    chost = data[pos:pos + hlen].decode()
    pos += hlen
    (cport,) = struct.unpack(">i", data[pos:pos + 4])
    return chost, cport


def end_transaction(bootstrap: str, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
                    timeout: float = 10.0) -> int:
    """Send EndTxn (commit or abort) for the transaction of ``producer_id``/``producer_epoch``.

    Returns the Kafka error code: ``NONE`` (done now), ``INVALID_TXN_STATE`` (no transaction of
    that producer is open: it was completed before), ``PRODUCER_FENCED`` /
    ``INVALID_PRODUCER_EPOCH`` (another producer took the id over, which aborted it).  Retries
    while the coordinator moves; raises :class:`ProtocolError` for anything else.
    """
    body = _string(transactional_id) + struct.pack(">qhb", producer_id, producer_epoch, 1 if commit else 0)
    for _ in range(20):
        host, port = find_transaction_coordinator(bootstrap, transactional_id, timeout)
        data = _request(host, port, END_TXN, 1, body, timeout)
        _throttle, code = struct.unpack(">ih", data[:6])
        if code in RETRIABLE:
            continue
        if code in (NONE, INVALID_TXN_STATE, PRODUCER_FENCED, INVALID_PRODUCER_EPOCH):
            return code
        raise ProtocolError(code, f"EndTxn for {transactional_id!r} failed: error {code}")
    raise ProtocolError(COORDINATOR_NOT_AVAILABLE, f"no coordinator for {transactional_id!r} answered EndTxn")
