"""Limits on a pipeline definition, checked while it is loaded and planned.

A pipeline comes from the network (``POST /jobs``), so every dimension that makes loading,
planning or expanding it expensive is bounded, and checked *before* the expensive step: the
YAML's bytes before parsing, its nesting depth, aliases and total values (after alias expansion)
while it is composed, expression length before compiling, node count before planning, and the
job's subtasks and channels before the JobGraph is expanded.  Each limit is a configuration key
(:mod:`streamlet.config`); :class:`PipelineLimits` carries their values to the loader and planner.

A limit that is exceeded raises :class:`~streamlet.errors.PipelineLimitError` naming the limit,
its value and the key that raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from streamlet.config import OPTIONS
from streamlet.errors import PipelineLimitError

_KEYS = {
    "max_bytes": "pipeline.yaml.max-bytes",
    "max_depth": "pipeline.yaml.max-depth",
    "max_values": "pipeline.yaml.max-nodes",
    "max_aliases": "pipeline.yaml.max-aliases",
    "max_expression_length": "pipeline.expression.max-length",
    "max_nodes": "pipeline.max-nodes",
    "max_parallelism_limit": "pipeline.max-parallelism-limit",
    "max_subtasks": "pipeline.max-subtasks",
    "max_channels": "pipeline.max-channels",
    "max_deployment_bytes": "rpc.max-message-size",
}
_DEFAULTS = {o.key: o.default for o in OPTIONS}


@dataclass(frozen=True)
class PipelineLimits:
    """The limits of one JobManager (or CLI) configuration; defaults are the declared ones."""

    max_bytes: int = _DEFAULTS["pipeline.yaml.max-bytes"]
    max_depth: int = _DEFAULTS["pipeline.yaml.max-depth"]
    max_values: int = _DEFAULTS["pipeline.yaml.max-nodes"]
    max_aliases: int = _DEFAULTS["pipeline.yaml.max-aliases"]
    max_expression_length: int = _DEFAULTS["pipeline.expression.max-length"]
    max_nodes: int = _DEFAULTS["pipeline.max-nodes"]
    max_parallelism_limit: int = _DEFAULTS["pipeline.max-parallelism-limit"]
    max_subtasks: int = _DEFAULTS["pipeline.max-subtasks"]
    max_channels: int = _DEFAULTS["pipeline.max-channels"]
    #: operator specs travel once per subtask in the deployments: their total is bounded by the
    #: largest RPC message
    max_deployment_bytes: int = _DEFAULTS["rpc.max-message-size"]

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> PipelineLimits:
        """The limits in ``config`` (a :class:`~streamlet.config.Configuration`); defaults for None."""
        if config is None:
            return cls()
        return cls(**{name: config[key] for name, key in _KEYS.items()})

    @staticmethod
    def key(name: str) -> str:
        """The configuration key of limit ``name`` (a field of this class)."""
        return _KEYS[name]

    def exceeded(self, name: str, what: str, where: str, status: int = 413) -> PipelineLimitError:
        """The error for ``what`` going past limit ``name``: names the value, the limit and its key."""
        key = _KEYS[name]
        return PipelineLimitError(
            f"{what}; the limit is {getattr(self, name)} ({key}): make the pipeline smaller, or raise {key} "
            "in the configuration of the process that checks it (the jobmanager's, for submissions)",
            where, key=key, status=status)


#: the limits used when a caller passes none (the declared defaults)
DEFAULT_LIMITS = PipelineLimits()
