"""The RPC envelope: every message type round-trips; bad frames are named."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from streamlet.rpc import codec
from streamlet.rpc.errors import CodecError
from streamlet.rpc.messages import MESSAGES, VERSION, DeployTasks, Heartbeat, Message


def _sample(cls: type[Message]) -> Message:
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            continue
        values[f.name] = {"str": "x", "int": 1, "float": 1.5, "bool": True}.get(
            str(f.type), [] if str(f.type).startswith("list") else {})
    return cls(**values)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_message_round_trips(name: str) -> None:
    msg = _sample(MESSAGES[name])
    env = codec.decode(codec.encode(msg, 7, re=3, fence="f"))
    assert env.message == msg and env.id == 7 and env.re == 3 and env.fence == "f"


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    frame = orjson.dumps({"v": VERSION, "type": "Heartbeat", "id": 1, "re": None, "fence": None,
                          "payload": {"task_manager_id": "tm", "slots": [], "added_later": 1}})
    assert codec.decode(frame).message == Heartbeat("tm", [])


@pytest.mark.parametrize("frame, text", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (orjson.dumps({"v": 99, "type": "Ack", "id": 1}), "version 99"),
    (orjson.dumps({"v": VERSION, "type": "Nope", "id": 1}), "unknown rpc message type"),
    (orjson.dumps({"v": VERSION, "type": "CancelJob", "id": 1, "payload": {}}), "malformed CancelJob"),
])
def test_bad_frames_raise_codec_errors(frame: bytes, text: str) -> None:
    with pytest.raises(CodecError, match=text):
        codec.decode(frame)


def test_deploy_payload_is_json_native() -> None:
    d = DeployTasks("j", "name", [{"slot": 0, "attempt_id": "a", "tdd": {"x": 1}}], {"v": ["tm"]}, {"tm": "h:1"},
                    {"f.py": "YQ=="})
    assert codec.decode(codec.encode(d, 1)).message == d
