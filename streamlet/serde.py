"""orjson helpers used for every serialization on the wire and in files."""

from __future__ import annotations

from typing import Any

import orjson


def dumps_lines(records: list[Any]) -> bytes:
    """Encode records as JSON lines (each followed by a newline)."""
    if not records:
        return b""
    d = orjson.dumps
    return b"\n".join([d(r) for r in records]) + b"\n"



def json_copy(records: list[Any], node_id: str) -> list[Any]:
    """``records`` as a JSON round trip gives them back: what a remote channel delivers.

    Used where records cross a local channel and may not be JSON-normal (after user code) or are
    read by several consumers (each gets its own copy).  Raises
    :class:`~streamlet.errors.RecordNotJsonError` naming ``node_id`` and the first offending record.
    """
    try:
        return orjson.loads(orjson.dumps(records))
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise_not_json(records, node_id, exc)
        raise


def raise_not_json(records: list[Any], node_id: str, exc: BaseException) -> None:
    """Raise :class:`~streamlet.errors.RecordNotJsonError` for the first record orjson refuses."""
    from streamlet.errors import RecordNotJsonError

    d = orjson.dumps
    for r in records:
        try:
            d(r)
        except TypeError as bad:
            raise RecordNotJsonError(node_id, r, bad) from None
    raise RecordNotJsonError(node_id, records, exc) from None
