"""The RPC envelope: ``{"v", "type", "id", "re", "fence", "payload"}`` encoded with orjson.

* ``v``: protocol version (:data:`~streamlet.rpc.messages.VERSION`); another version is refused;
* ``type``: a message type name from :data:`~streamlet.rpc.messages.MESSAGES`;
* ``id``: a per-connection sequence number of the sender;
* ``re``: for a response, the ``id`` of the request it answers (None for a request);
* ``fence``: the sender's registration id once registered (stale fences are rejected);
* ``payload``: the message's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from streamlet.rpc.errors import CodecError
from streamlet.rpc.messages import MESSAGES, VERSION, Message


@dataclass(frozen=True)
class Envelope:
    """A decoded frame."""

    id: int
    re: int | None
    fence: str | None
    message: Message


def encode(message: Message, id: int, re: int | None = None, fence: str | None = None) -> bytes:
    """The frame of ``message`` (raises TypeError for a payload orjson cannot encode)."""
    return orjson.dumps({"v": VERSION, "type": message.TYPE, "id": id, "re": re, "fence": fence,
                         "payload": message.to_payload()})


def decode(frame: bytes | str) -> Envelope:
    """The envelope of ``frame``; raises :class:`CodecError` naming what is wrong."""
    try:
        data: Any = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"rpc frame is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CodecError(f"rpc frame must be a JSON object, got {type(data).__name__}")
    if data.get("v") != VERSION:
        raise CodecError(f"rpc protocol version {data.get('v')!r} is not supported (this side speaks {VERSION}); "
                         "run the same streamlet version on the jobmanager and taskmanagers")
    kind = data.get("type")
    cls = MESSAGES.get(kind) if type(kind) is str else None
    if cls is None:
        raise CodecError(f"unknown rpc message type {str(kind)[:100]!r}")
    payload = data.get("payload") or {}
    re, fence = data.get("re"), data.get("fence")
    if (not isinstance(payload, dict) or type(data.get("id")) is not int or (re is not None and type(re) is not int)
            or (fence is not None and type(fence) is not str)):
        raise CodecError(f"malformed rpc frame of type {cls.TYPE!r}: id and re must be integers, fence a string, "
                         "payload a map")
    try:
        message = cls.from_payload(payload)
    except TypeError as exc:
        raise CodecError(f"malformed {cls.TYPE} payload: {exc}") from None
    return Envelope(data["id"], re, fence, message)
