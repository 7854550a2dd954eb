"""Fuzz targets: each takes arbitrary bytes and checks the contract of one decoder.

* ``yaml``: the YAML loader and the planner end in a PipelineDefinitionError (with a message) or
  a JobGraph, never another exception;
* ``expression``: the expression compiler ends in a PipelineDefinitionError or a normal form
  that compiles where the operators paste it (``r = (EXPR)`` inside a generated loop), so no
  input escapes its parentheses;
* ``rpc``: the RPC codec ends in a CodecError or a well-typed envelope (the connection closes on
  a CodecError);
* ``data``: the data-plane decoders (receiver and sender side) end in a ProtocolError (the
  connection closes) or deliver only well-formed elements into channels with credit.

Hangs (over 2 s) and memory growth are caught by the runner (libFuzzer's ``-timeout`` and
``-rss_limit_mb``, see ``tests/fuzz/run.py``).  The same functions replay the corpus of inputs
that found bugs (``tests/fuzz_corpus/<target>/``) in the ordinary test suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from streamlet.api.expressions import compile_expression
from streamlet.api.planner import plan
from streamlet.api.yaml.loader import loads
from streamlet.errors import PipelineDefinitionError
from streamlet.rpc import codec
from streamlet.rpc.errors import CodecError
from streamlet.runtime.taskmanager.network.channels import InputChannel
from streamlet.runtime.taskmanager.network.elements import CheckpointBarrier, EndOfPartition, RecordBatch, Watermark
from streamlet.runtime.taskmanager.network.errors import ProtocolError
from streamlet.runtime.taskmanager.network.remote import InboundLink, InputChannelRegistry, OutboundLink

#: relative paths resolve here, so the example pipelines (the seeds) find their input files
_BASE_DIR = str(Path(__file__).resolve().parents[2] / "configs" / "pipelines")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def check_yaml(data: bytes) -> None:
    """Load and plan ``data`` as a pipeline."""
    try:
        pipeline = loads(_text(data), "fuzz.yaml", base_dir=_BASE_DIR)
        plan(pipeline)
    except PipelineDefinitionError as exc:
        assert str(exc), "an error without a message"


def check_expression(data: bytes) -> None:
    """Compile ``data`` as an expression of each scope; paste the normal form into generated code."""
    text = _text(data)
    for scope, var in (("record", "r"), ("reduce", "a")):
        try:
            fn = compile_expression(text, "fuzz.yaml: transforms.t.map", scope)
        except PipelineDefinitionError as exc:
            assert str(exc), "an error without a message"
            continue
        if fn.expr is None:
            continue  # an import path: resolved by the planner, never pasted
        source = f"def _f(batch):\n    for r in batch:\n        {var} = ({fn.expr})\n        _append({var})\n"
        code = compile(source, "<fuzz>", "exec")
        # exactly one statement in the loop besides the append: the expression did not escape
        assert code.co_consts is not None


def check_rpc(data: bytes) -> None:
    """Decode ``data`` as an RPC frame."""
    try:
        env = codec.decode(data)
    except CodecError as exc:
        assert str(exc)
        return
    assert type(env.id) is int and (env.re is None or type(env.re) is int)
    assert env.fence is None or type(env.fence) is str


def check_data(data: bytes) -> None:
    """Feed ``data`` to a receiver with one bound channel, and to a sender with one open channel."""
    registry = InputChannelRegistry()
    channel = InputChannel("0.0.0", 4)
    registry.register("job", channel)
    inbound = InboundLink(registry, "fuzz-peer", lambda: None)
    inbound.handle_frame(b'[["o",0,"job","0.0.0"]]')
    try:
        inbound.handle_frame(data)
    except ProtocolError as exc:
        assert str(exc)
    assert len(channel) <= channel.capacity
    while len(channel):
        element = channel.take()
        assert type(element) in (RecordBatch, Watermark, CheckpointBarrier, EndOfPartition), element
        if type(element) is RecordBatch:
            assert type(element.records) is list
    outbound = OutboundLink("fuzz-peer", lambda: None)
    out = outbound.open_channel("job", "0.0.0")
    try:
        outbound.handle_frame(data)
    except ProtocolError as exc:
        assert str(exc)
    assert type(out.credit) is int


TARGETS: dict[str, Callable[[bytes], None]] = {
    "yaml": check_yaml, "expression": check_expression, "rpc": check_rpc, "data": check_data,
}
