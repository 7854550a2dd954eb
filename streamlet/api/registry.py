"""Names usable from YAML (``type: file``) → connector classes, by import string.

``api`` never imports connectors at module import time (they are siblings in the layering), so
``import streamlet`` stays light; a class is imported the first time a pipeline names it.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Mapping

from streamlet.errors import PipelineDefinitionError

SOURCES: dict[str, str] = {
    "file": "streamlet.connectors.files:FileSource",
    "datagen": "streamlet.connectors.generator:DatagenSource",
    "nexmark": "streamlet.connectors.nexmark:NexmarkSource",
    "kafka": "streamlet.connectors.kafka.source:KafkaSource",
}
SINKS: dict[str, str] = {
    "print": "streamlet.connectors.stdio:PrintSink",
    "blackhole": "streamlet.connectors.stdio:BlackholeSink",
    "file": "streamlet.connectors.file_sink:FileSink",
    "kafka": "streamlet.connectors.kafka.sink:KafkaSink",
    "postgres": "streamlet.connectors.postgres.sink:PostgresSink",
}


#: how the user API runs a JobGraph without importing the runtime: the MiniCluster's entry points
#: (``streamlet.runtime.minicluster.execute`` / ``execute_async``), by import string
EXECUTOR_MODULE = "streamlet.runtime.minicluster"


def executor(name: str) -> Any:
    """``execute`` or ``execute_async`` of the MiniCluster: ``(graph, config) -> JobResult``."""
    return load_class(f"{EXECUTOR_MODULE}:{name}")


def source_types() -> list[str]:
    return sorted(SOURCES)


def sink_types() -> list[str]:
    return sorted(SINKS)


def load_class(path: str) -> Any:
    """Import ``package.module:Name``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _lookup(table: Mapping[str, str], kind: str, what: str, where: str) -> Any:
    if kind not in table:
        close = difflib.get_close_matches(str(kind), list(table), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PipelineDefinitionError(
            f"unknown {what} type {kind!r}; {hint}allowed: {', '.join(sorted(table))}", f"{where}.type")
    return load_class(table[kind])


def source_class(kind: str, where: str = "") -> Any:
    return _lookup(SOURCES, kind, "source", where)


def sink_class(kind: str, where: str = "") -> Any:
    return _lookup(SINKS, kind, "sink", where)


def validate_source(kind: str, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
    """Check a source's keys with its class; returns normalized params."""
    return source_class(kind, where).validate(params, where, base_dir)


def validate_sink(kind: str, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
    """Check a sink's keys with its class; returns normalized params."""
    return sink_class(kind, where).validate(params, where, base_dir)
