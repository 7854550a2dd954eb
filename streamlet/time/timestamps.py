"""A source's ``timestamp:`` spec compiled into a batch function ``records -> list[int]``.

The spec (built by the YAML loader, carried in the JobGraph) is one of:

* ``{"field": "ts"}``: the record's field ``ts`` holds epoch milliseconds (an int, a float, a
  string of digits) or an ISO-8601 string (``2024-05-01T12:00:00.250Z``; without an offset it
  is UTC);
* ``{"expr": "r['t'] * 1000"}`` or ``{"path": "pkg.mod:fn"}``: a function of the record ``r``
  whose result is read the same way.

The fast path is one list comprehension plus one C-level type check per batch; values that are
not all ints go through a per-value conversion.  A record without the field, or a value that is
neither epoch milliseconds nor ISO-8601, fails the job with a
:class:`~streamlet.errors.UserFunctionError` naming the source node and the record.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Callable, Mapping

from streamlet.errors import UserFunctionError
from streamlet.udf import EXPRESSION_GLOBALS, resolve_path

TimestampFunction = Callable[[list[Any]], list[int]]
_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)


def to_epoch_ms(value: Any) -> int:
    """Epoch milliseconds of one timestamp value; raises ValueError saying what is accepted."""
    t = type(value)
    if t is int:
        return value
    if t is float and math.isfinite(value):
        return int(value)
    if t is str:
        s = value.strip()
        if s.lstrip("-").isdigit():
            return int(s)
        try:
            dt = datetime.datetime.fromisoformat(s)
        except ValueError:
            pass
        else:
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=_UTC)
            delta = dt - _EPOCH
            return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise ValueError(f"timestamp {value!r} is neither epoch milliseconds (an int) nor an ISO-8601 string "
                     "like '2024-05-01T12:00:00Z'")


def compile_timestamps(spec: Mapping[str, Any], node_id: str) -> TimestampFunction:
    """The batch function of ``spec`` for source ``node_id`` (see the module docstring).

    Called once per source subtask, when its chain is built; the function it returns is called
    per batch and returns a new list of int milliseconds, parallel to the records.
    """
    fld = spec.get("field")
    if fld is not None:
        def value_of(r: Any) -> Any:
            return r[fld]
        raw = _field_batch(fld)
    else:
        value_of = _function(spec)
        raw = _function_batch(spec, value_of)

    def timestamps(records: list[Any]) -> list[int]:
        try:
            out = raw(records)
        except Exception:  # noqa: BLE001 - found again record by record, re-raised naming it
            out = [_value(value_of, r, fld, node_id) for r in records]
        if not out or set(map(type, out)) == {int}:
            return out
        return _convert(out, records, node_id)

    return timestamps


def _field_batch(fld: str) -> Callable[[list[Any]], list[Any]]:
    def batch(records: list[Any]) -> list[Any]:
        return [r[fld] for r in records]
    return batch


def _function_batch(spec: Mapping[str, Any], fn: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    if spec.get("expr"):
        # the expression inlined in the comprehension: no call per record
        code = compile(f"lambda batch: [({spec['expr']}) for r in batch]", "<timestamp>", "eval")
        return eval(code, dict(EXPRESSION_GLOBALS))  # noqa: S307 - the pipeline's own expression

    def batch(records: list[Any]) -> list[Any]:
        return [fn(r) for r in records]
    return batch


def _function(spec: Mapping[str, Any]) -> Callable[[Any], Any]:
    if spec.get("path"):
        return resolve_path(spec["path"])
    code = compile(f"lambda r: ({spec['expr']})", "<timestamp>", "eval")
    return eval(code, dict(EXPRESSION_GLOBALS))  # noqa: S307 - the pipeline's own expression


def _value(value_of: Callable[[Any], Any], record: Any, fld: str | None, node_id: str) -> Any:
    try:
        return value_of(record)
    except (KeyError, TypeError) as exc:
        if fld is None:
            raise UserFunctionError(node_id, record, exc) from exc
        msg = (f"record has no timestamp field {fld!r}; set the source's timestamp: to a field every "
               "record has, or to an expression over r")
        raise UserFunctionError(node_id, record, KeyError(msg)) from exc
    except Exception as exc:  # noqa: BLE001 - the user's expression raised
        raise UserFunctionError(node_id, record, exc) from exc


def _convert(values: list[Any], records: list[Any], node_id: str) -> list[int]:
    out = []
    for v, r in zip(values, records):
        try:
            out.append(to_epoch_ms(v))
        except ValueError as exc:
            raise UserFunctionError(node_id, r, exc) from None
    return out
