"""Checkpointing and restart settings of a job: the pipeline's ``checkpointing:`` / ``restart:``
maps over the cluster's ``execution.checkpointing.*`` / ``restart-strategy.*`` keys.

Pure data.  :func:`parse_checkpointing` and :func:`parse_restart` check a pipeline's maps (errors
name the key and the fix) and return them normalised (durations in seconds); the JobGraph carries
that; :func:`checkpoint_settings` and :func:`restart_settings` resolve the final settings of a job
against a :class:`~streamlet.config.Configuration` (the JobManager's).

YAML keys and the configuration keys they default from (Flink's names)::

    checkpointing:                      execution.checkpointing.
      interval: 10s                       interval          (0 = no checkpoints)
      mode: exactly_once                  mode              (exactly_once | at_least_once)
      incremental: true                   incremental
      timeout: 10m                        timeout
      min_pause: 0s                       min-pause
      retained: 3                         num-retained
      dir: /checkpoints                   dir               (a path, file:// or s3:// URI)

    restart:                            restart-strategy.
      strategy: fixed-delay               type              (none | fixed-delay | failure-rate | exponential-delay)
      attempts: 3                         fixed-delay.attempts
      delay: 1s                           fixed-delay.delay / failure-rate.delay
      max_failures_per_interval: 1        failure-rate.max-failures-per-interval
      failure_rate_interval: 1min         failure-rate.failure-rate-interval
      initial_backoff: 1s                 exponential-delay.initial-backoff
      max_backoff: 1min                   exponential-delay.max-backoff
      backoff_multiplier: 2.0             exponential-delay.backoff-multiplier
      reset_backoff_threshold: 1h         exponential-delay.reset-backoff-threshold
      jitter_factor: 0.1                  exponential-delay.jitter-factor
      attempts_before_reset_backoff: 10   exponential-delay.attempts-before-reset-backoff

As in Flink, a job with checkpoints and no restart strategy anywhere restarts with fixed-delay
(unlimited attempts, 1 s delay); without checkpoints the default is ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Mapping

from streamlet.config import ConfigError, parse_duration
from streamlet.errors import PipelineDefinitionError

EXACTLY_ONCE: Final = "exactly_once"
AT_LEAST_ONCE: Final = "at_least_once"
MODES: Final = (EXACTLY_ONCE, AT_LEAST_ONCE)
STRATEGIES: Final = ("none", "fixed-delay", "failure-rate", "exponential-delay")

#: YAML key -> (configuration key, kind)
CHECKPOINT_PARAMS: Final[dict[str, tuple[str, str]]] = {
    "interval": ("execution.checkpointing.interval", "duration"),
    "mode": ("execution.checkpointing.mode", "mode"),
    "incremental": ("execution.checkpointing.incremental", "bool"),
    "timeout": ("execution.checkpointing.timeout", "duration"),
    "min_pause": ("execution.checkpointing.min-pause", "duration"),
    "retained": ("execution.checkpointing.num-retained", "positive"),
    "dir": ("execution.checkpointing.dir", "str"),
}
#: YAML key -> (configuration key, kind); ``strategy`` is ``restart-strategy.type``
RESTART_PARAMS: Final[dict[str, tuple[str, str]]] = {
    "strategy": ("restart-strategy.type", "strategy"),
    "attempts": ("restart-strategy.fixed-delay.attempts", "positive"),
    "delay": ("restart-strategy.fixed-delay.delay", "duration"),
    "max_failures_per_interval": ("restart-strategy.failure-rate.max-failures-per-interval", "positive"),
    "failure_rate_interval": ("restart-strategy.failure-rate.failure-rate-interval", "duration"),
    "initial_backoff": ("restart-strategy.exponential-delay.initial-backoff", "duration"),
    "max_backoff": ("restart-strategy.exponential-delay.max-backoff", "duration"),
    "backoff_multiplier": ("restart-strategy.exponential-delay.backoff-multiplier", "multiplier"),
    "reset_backoff_threshold": ("restart-strategy.exponential-delay.reset-backoff-threshold", "duration"),
    "jitter_factor": ("restart-strategy.exponential-delay.jitter-factor", "fraction"),
    "attempts_before_reset_backoff": ("restart-strategy.exponential-delay.attempts-before-reset-backoff", "positive"),
}
#: restart keys that belong to each strategy (``delay`` is shared by fixed-delay and failure-rate)
STRATEGY_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "none": (),
    "fixed-delay": ("attempts", "delay"),
    "failure-rate": ("max_failures_per_interval", "failure_rate_interval", "delay"),
    "exponential-delay": ("initial_backoff", "max_backoff", "backoff_multiplier", "reset_backoff_threshold",
                          "jitter_factor", "attempts_before_reset_backoff"),
}


def _value(kind: str, value: Any, where: str) -> Any:
    if kind == "duration":
        try:
            return parse_duration(value, where)
        except ConfigError:
            raise PipelineDefinitionError(f"expected a duration like '10s', '500ms' or '1min', got {value!r}",
                                          where) from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise PipelineDefinitionError(f"expected true or false, got {value!r}", where)
        return value
    if kind == "positive":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PipelineDefinitionError(f"expected a positive integer, got {value!r}", where)
        return value
    if kind == "multiplier":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
            raise PipelineDefinitionError(f"expected a number >= 1, got {value!r}", where)
        return float(value)
    if kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise PipelineDefinitionError(f"expected a number from 0 to 1, got {value!r}", where)
        return float(value)
    if kind == "mode":
        if value not in MODES:
            raise PipelineDefinitionError(f"{value!r} is not a checkpointing mode; allowed: {', '.join(MODES)}", where)
        return value
    if kind == "strategy":
        if value not in STRATEGIES:
            raise PipelineDefinitionError(
                f"{value!r} is not a restart strategy; allowed: {', '.join(STRATEGIES)}", where)
        return value
    if not isinstance(value, str) or not value:
        raise PipelineDefinitionError(f"expected a non-empty string, got {value!r}", where)
    return value


def _parse(value: Any, params: Mapping[str, tuple[str, str]], where: str, example: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PipelineDefinitionError(f"expected a map like {example}, got {value!r}", where)
    out = {}
    for key, v in value.items():
        if key not in params:
            raise PipelineDefinitionError(f"unknown key {key!r}; allowed keys: {', '.join(params)}", f"{where}.{key}")
        out[key] = _value(params[key][1], v, f"{where}.{key}")
    return out


def parse_checkpointing(value: Any, where: str) -> dict[str, Any]:
    """A pipeline's ``checkpointing:`` map, checked and normalised (durations in seconds)."""
    return _parse(value, CHECKPOINT_PARAMS, where, "{interval: 10s, mode: exactly_once}")


def parse_restart(value: Any, where: str) -> dict[str, Any]:
    """A pipeline's ``restart:`` map, checked and normalised; keys of another strategy are refused."""
    out = _parse(value, RESTART_PARAMS, where, "{strategy: fixed-delay, attempts: 3, delay: 1s}")
    strategy = out.get("strategy")
    if strategy is None:
        raise PipelineDefinitionError(f"missing key 'strategy'; allowed: {', '.join(STRATEGIES)}", where)
    for key in out:
        if key != "strategy" and key not in STRATEGY_KEYS[strategy]:
            allowed = ", ".join(STRATEGY_KEYS[strategy]) or "none"
            raise PipelineDefinitionError(f"{key!r} does not apply to the {strategy} strategy; its keys: {allowed}",
                                          f"{where}.{key}")
    return out


@dataclass(frozen=True)
class CheckpointSettings:
    """The checkpointing of one job (seconds for durations)."""

    interval: float = 0.0
    mode: str = EXACTLY_ONCE
    incremental: bool = True
    timeout: float = 600.0
    min_pause: float = 0.0
    retained: int = 3
    dir: str = "/tmp/streamlet-checkpoints"

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def to_json(self) -> dict[str, Any]:
        return {"interval": self.interval, "mode": self.mode, "incremental": self.incremental,
                "timeout": self.timeout, "min_pause": self.min_pause, "retained": self.retained, "dir": self.dir}


@dataclass(frozen=True)
class RestartSettings:
    """The restart strategy of one job (seconds for durations; Flink's defaults)."""

    strategy: str = "none"
    attempts: int = 2**31 - 1
    delay: float = 1.0
    max_failures_per_interval: int = 1
    failure_rate_interval: float = 60.0
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    backoff_multiplier: float = 2.0
    reset_backoff_threshold: float = 3600.0
    jitter_factor: float = 0.1
    attempts_before_reset_backoff: int = 2**31 - 1

    def to_json(self) -> dict[str, Any]:
        keys = ("strategy",) + STRATEGY_KEYS[self.strategy]
        return {k: getattr(self, k) for k in keys}


def _configured(config: Any, key: str) -> Any:
    try:
        return config[key]
    except KeyError:
        return None


def checkpoint_settings(job: Mapping[str, Any] | None, config: Any) -> CheckpointSettings:
    """The job's ``checkpointing:`` over the configuration's ``execution.checkpointing.*`` keys."""
    job = job or {}
    values: dict[str, Any] = {}
    for name, (key, _) in CHECKPOINT_PARAMS.items():
        v = job.get(name, _configured(config, key))
        if v is not None:
            values[name] = v
    return CheckpointSettings(**values)


def restart_settings(job: Mapping[str, Any] | None, config: Any, checkpointing: bool) -> RestartSettings:
    """The job's ``restart:`` over the ``restart-strategy.*`` keys; the default strategy is
    fixed-delay (unlimited attempts, 1 s) when ``checkpointing`` is on, else none (as in Flink)."""
    job = job or {}
    if job.get("strategy") is not None:
        strategy = job["strategy"]
        values = {k: v for k, v in job.items() if k != "strategy"}
    else:
        strategy = _configured(config, "restart-strategy.type") or ("fixed-delay" if checkpointing else "none")
        values = {}
    for name in STRATEGY_KEYS[strategy]:
        if name in values:
            continue
        key = RESTART_PARAMS[name][0]
        if name == "delay" and strategy == "failure-rate":
            key = "restart-strategy.failure-rate.delay"
        v = _configured(config, key)
        if v is not None:
            values[name] = v
    return RestartSettings(strategy=strategy, **values)
