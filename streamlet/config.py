"""Configuration: every key declared once, with its type, default and one-line doc.

Precedence, highest first:

1. ``-D key=value`` on the command line (``overrides``);
2. environment variables ``STREAMLET__A__B`` for key ``a.b`` (dashes become ``_``);
3. the ``--config`` file (YAML, flat ``key: value`` pairs or nested maps);
4. the declared defaults below.

``streamlet config`` prints the effective configuration; ``configs/streamlet.yaml`` is generated
from :data:`OPTIONS` (``streamlet config --defaults``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from streamlet.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h|d)?\s*$")
_UNITS = {None: 0.001, "ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0,
          "d": 86400.0}


def parse_duration(value: Any, where: str = "") -> float:
    """Seconds from ``"10s"``, ``"100ms"``, ``"1min"`` or a bare number of milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration like '10s' or '100ms', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(f"{where}: expected a duration like '10s' or '100ms', got {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"expected an integer, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class Option:
    """One configuration key."""

    key: str
    type: str  # "int" | "str" | "bool" | "duration" | "float"
    default: Any
    doc: str
    #: why the key has no effect yet; such a key is refused when set to anything but its default
    unused: str | None = None
    #: allowed values of a "str" key (empty: any)
    choices: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """The doc line shown by ``streamlet config`` (says "not used yet" for unused keys)."""
        extra = f" (one of: {', '.join(self.choices)})" if self.choices else ""
        return f"{self.doc}{extra}; not used yet: {self.unused}" if self.unused else f"{self.doc}{extra}"

    def check(self, value: Any) -> Any:
        """``parse(value)``, refused when the key is unused and ``value`` is not its default."""
        parsed = self.parse(value)
        if self.unused and parsed != self.parse(self.default):
            raise ConfigError(f"config key {self.key!r} is not used yet ({self.unused}); remove it or set it to "
                              f"its default {self.default!r}")
        if self.choices and parsed is not None and parsed not in self.choices:
            raise ConfigError(f"config key {self.key!r}: {parsed!r} is not one of {', '.join(self.choices)}")
        return parsed

    def parse(self, value: Any) -> Any:
        """The typed value of ``value``; raises :class:`ConfigError` naming the key."""
        conv: dict[str, Callable[[Any], Any]] = {
            "int": _to_int, "str": str, "bool": _to_bool, "float": float,
            "duration": lambda v: parse_duration(v, self.key),
        }
        if value is None and (self.type == "str" or self.default is None):
            return None  # unset (a key whose default is unset may be written back as null)
        try:
            return conv[self.type](value)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key {self.key!r}: {exc}; expected a {self.type}") from exc


OPTIONS: tuple[Option, ...] = (
    Option("jobmanager.rpc.address", "str", "127.0.0.1", "address TaskManagers use to reach the JobManager"),
    Option("jobmanager.rpc.port", "int", 6123, "port of the JobManager's RPC websocket endpoint"),
    Option("jobmanager.slot-request.timeout", "duration", "300s", "how long a job waits for slots before it fails"),
    Option("rest.address", "str", "127.0.0.1", "address the REST API binds to"),
    Option("rest.port", "int", 8081, "port of the REST API and dashboard"),
    Option("taskmanager.numberOfTaskSlots", "int", 1, "slots offered by each TaskManager"),
    Option("taskmanager.data.address", "str", "127.0.0.1", "address a TaskManager's data endpoint binds to"),
    Option("taskmanager.data.port", "int", 0, "port of a TaskManager's data endpoint (0 = any free port)"),
    Option("taskmanager.network.queue-capacity", "int", 4, "batches buffered per channel (credits of a remote channel)"),
    Option("taskmanager.registration.max-backoff", "duration", "5s", "longest wait between registration attempts"),
    Option("parallelism.default", "int", 1, "parallelism of nodes that set none"),
    Option("pipeline.max-parallelism", "int", 128, "number of key groups (unit of rescaling)"),
    Option("pipeline.batch-size", "int", 1024, "records per batch on channels"),
    Option("pipeline.auto-watermark-interval", "duration", "200ms", "period of watermark emission"),
    Option("execution.buffer-timeout", "duration", "100ms", "longest time a partly filled batch waits before it is sent"),
    Option("execution.progress-interval", "duration", "5s", "period of plain progress lines of `streamlet run` off a terminal"),
    Option("state.backend.type", "str", "heap", "keyed state backend: heap or rocksdb",
           choices=("heap", "rocksdb")),
    Option("state.backend.rocksdb.localdir", "str", None, "directory of the rocksdb backend's local databases and checkpoints (unset = the system temp directory)"),
    Option("state.backend.rocksdb.write-cache.entries", "int", 100_000, "entries the rocksdb backend keeps in its in-memory write cache per subtask (hot keys within it run at dict speed)"),
    Option("state.backend.rocksdb.writebuffer.size-mb", "int", 32, "RocksDB memtable size per state (column family), MiB"),
    Option("state.backend.rocksdb.block.cache-size-mb", "int", 64, "RocksDB block cache per subtask, MiB"),
    Option("state.backend.rocksdb.thread.num", "int", 2, "RocksDB background threads (flush, compaction) per subtask"),
    Option("execution.checkpointing.dir", "str", "/tmp/streamlet-checkpoints", "where checkpoints are written: a directory shared by every process of the cluster, a file:// URI or s3://bucket/prefix (pipeline: checkpointing.dir)"),
    Option("execution.checkpointing.savepoint-dir", "str", None, "default target directory of savepoints (unset = a savepoint needs a directory; pipeline/CLI/REST may name one)"),
    Option("execution.checkpointing.timeout", "duration", "10min", "a checkpoint not complete after this long is aborted (pipeline: checkpointing.timeout)"),
    Option("execution.checkpointing.min-pause", "duration", "0s", "least time between the end of one checkpoint and the start of the next (pipeline: checkpointing.min_pause)"),
    Option("s3.endpoint", "str", None, "endpoint of S3-compatible checkpoint storage, e.g. http://127.0.0.1:9000 (unset = AWS S3)"),
    Option("s3.access-key", "str", None, "access key id for s3:// checkpoint storage (unset = the environment's AWS credentials)"),
    Option("s3.secret-key", "str", None, "secret access key for s3:// checkpoint storage (never shown by streamlet config)"),
    Option("s3.region", "str", "us-east-1", "region of the s3:// checkpoint bucket"),
    Option("s3.path.style.access", "bool", None, "path-style S3 requests (unset = on when s3.endpoint is set, as S3-compatible servers need)"),
    Option("execution.checkpointing.interval", "duration", "0", "checkpoint interval of jobs that set none (0 = off; pipeline: checkpointing.interval)"),
    Option("execution.checkpointing.mode", "str", "exactly_once", "barrier alignment: exactly_once or at_least_once (pipeline: checkpointing.mode)",
           choices=("exactly_once", "at_least_once")),
    Option("execution.checkpointing.incremental", "bool", True, "incremental RocksDB checkpoints (pipeline: checkpointing.incremental)"),
    Option("execution.checkpointing.num-retained", "int", 3, "completed checkpoints kept; older ones are deleted (pipeline: checkpointing.retained)"),
    Option("high-availability.storageDir", "str", None, "directory where the JobManager keeps its jobs and the pointer to each job's latest checkpoint, so a JobManager started again after a crash resumes them (unset = jobs are lost with the JobManager)"),
    Option("heartbeat.interval", "duration", "2s", "period of heartbeats between JobManager and TaskManagers"),
    Option("heartbeat.timeout", "duration", "10s", "a peer silent this long is considered lost"),
    Option("process.gc.young-threshold", "int", 100_000, "container allocations between young-generation runs of "
           "Python's cyclic garbage collector in streamlet's processes (Python's default 700 makes full collections "
           "over large keyed state take much of the CPU; 0 = Python's default)"),
    Option("task.watchdog.timeout", "duration", None, "a subtask whose code holds a TaskManager's event loop this "
           "long (an endless loop in a user function) is interrupted and fails, so heartbeats go on; keep it below "
           "heartbeat.timeout (unset = half of heartbeat.timeout, 0 = no watchdog)"),
    Option("restart-strategy.type", "str", None, "restart strategy of jobs that set none (unset = fixed-delay with unlimited attempts when the job checkpoints, else none; pipeline: restart.strategy)",
           choices=("none", "fixed-delay", "failure-rate", "exponential-delay")),
    Option("restart-strategy.fixed-delay.attempts", "int", 2147483647, "restarts before the job fails (fixed-delay)"),
    Option("restart-strategy.fixed-delay.delay", "duration", "1s", "wait before each restart (fixed-delay)"),
    Option("restart-strategy.failure-rate.max-failures-per-interval", "int", 1, "failures within the interval before the job fails (failure-rate)"),
    Option("restart-strategy.failure-rate.failure-rate-interval", "duration", "1min", "window in which failures are counted (failure-rate)"),
    Option("restart-strategy.failure-rate.delay", "duration", "1s", "wait before each restart (failure-rate)"),
    Option("restart-strategy.exponential-delay.initial-backoff", "duration", "1s", "first wait (exponential-delay)"),
    Option("restart-strategy.exponential-delay.max-backoff", "duration", "1min", "longest wait (exponential-delay)"),
    Option("restart-strategy.exponential-delay.backoff-multiplier", "float", 2.0, "factor between two waits (exponential-delay)"),
    Option("restart-strategy.exponential-delay.reset-backoff-threshold", "duration", "1h", "a job running this long without failure starts again at the initial backoff (exponential-delay)"),
    Option("restart-strategy.exponential-delay.jitter-factor", "float", 0.1, "random fraction added to or taken from each wait (exponential-delay)"),
    Option("restart-strategy.exponential-delay.attempts-before-reset-backoff", "int", 2147483647, "restarts before the job fails (exponential-delay)"),
    Option("security.auth.token", "str", None, "shared secret for REST, RPC and data connections (unset = no authentication; never logged)"),
    Option("security.auth.token-file", "str", None, "file whose first line is the token (used when security.auth.token and STREAMLET_TOKEN are unset)"),
    Option("security.ssl.rest.enabled", "bool", False, "serve the REST API over HTTPS (clients verify it with security.ssl.rest.truststore)"),
    Option("security.ssl.rest.keystore", "str", None, "PEM file with the REST server's certificate chain and private key"),
    Option("security.ssl.rest.truststore", "str", None, "PEM CA certificates a REST client trusts (unset = the system's CAs)"),
    Option("security.ssl.internal.enabled", "bool", False, "mutual TLS on RPC and data connections between jobmanager and taskmanagers"),
    Option("security.ssl.internal.keystore", "str", None, "PEM file with this process's certificate chain and private key (internal TLS)"),
    Option("security.ssl.internal.truststore", "str", None, "PEM CA certificates that sign every cluster process's certificate (internal TLS)"),
    Option("security.ssl.verify-hostname", "bool", True, "TLS clients check that the peer's certificate names the address they connect to"),
    Option("rpc.ask-timeout", "duration", "10s", "timeout of one RPC request"),
    # cluster (JobManager / TaskManager daemons, RPC, REST)
    Option("rpc.max-message-size", "int", 64 * 1024 * 1024, "largest RPC websocket message in bytes (deployments carry job files)"),
    Option("cluster.evenly-spread-out-slots", "bool", True, "spread a job's slots over TaskManagers (one core each) instead of filling one first"),
    Option("jobstore.max-capacity", "int", 1000, "finished, failed and canceled jobs kept for the REST API (oldest dropped first)"),
    Option("web.upload.dir", "str", None, "directory for files submitted with jobs (unset = a temporary directory)"),
    Option("taskmanager.tmp.dir", "str", None, "directory for job files shipped to a TaskManager (unset = a temporary directory)"),
    Option("taskmanager.resource-id", "str", None, "id of a TaskManager (unset = a fresh 32-hex id)"),
    Option("taskmanager.metrics.interval", "duration", "1s", "period of per-subtask metrics a TaskManager computes and reports with heartbeats"),
    Option("taskmanager.cancel.timeout", "duration", "10s", "how long the JobManager waits for a cancelled subtask before it counts it as canceled"),
    Option("log.level", "str", "INFO", "log level of the jobmanager and taskmanager processes (DEBUG, INFO, WARNING, ERROR)"),
    Option("log.format", "str", "text", "log lines of the processes: text, or json (one object per line)", choices=("text", "json")),
    Option("metrics.address", "str", "127.0.0.1", "address a TaskManager's GET /metrics (Prometheus) binds to"),
    Option("metrics.port", "str", "9249-9259", "port of a TaskManager's GET /metrics: a port, a range (the first free one is taken) or 0 (any)"),
    Option("metrics.latency.interval", "duration", "0ms", "how often sources emit latency markers (0 = off); their latency is a histogram per source and operator in GET /metrics"),
    # limits on what a client may send (checked before any expensive work; see docs/operations.md)
    Option("rest.server.max-content-length", "int", 32 * 1024 * 1024, "largest REST request body in bytes (a pipeline with its files); larger is refused with 413"),
    Option("rest.server.read-timeout", "duration", "30s", "time a client has to send a whole request body; slower is answered 408"),
    Option("web.upload.max-file-size", "int", 16 * 1024 * 1024, "largest file submitted with a job, in bytes"),
    Option("web.upload.max-files", "int", 256, "most files submitted with one job"),
    Option("rest.flamegraph.enabled", "bool", True, "serve flame graphs (GET /jobs/:id/vertices/:vid/flamegraph); sampling runs only while one is requested, so enabled costs nothing otherwise"),
    Option("rest.flamegraph.num-samples", "int", 100, "stack samples taken of each subtask for one flame graph"),
    Option("rest.flamegraph.delay-between-samples", "duration", "50ms", "time between two stack samples of a subtask"),
    Option("rest.flamegraph.stack-depth", "int", 100, "outermost frames kept of each sampled stack"),
    Option("rest.flamegraph.refresh-interval", "duration", "60s", "a flame graph older than this is sampled again when requested (the old one is served meanwhile)"),
    Option("pipeline.yaml.max-bytes", "int", 1024 * 1024, "largest pipeline YAML document in bytes"),
    Option("pipeline.yaml.max-depth", "int", 32, "deepest nesting of maps and lists in a pipeline YAML document"),
    Option("pipeline.yaml.max-nodes", "int", 100_000, "most values (scalars, maps, lists) in a pipeline YAML document, counted after alias expansion"),
    Option("pipeline.yaml.max-aliases", "int", 1000, "most aliases (*name) in a pipeline YAML document"),
    Option("pipeline.expression.max-length", "int", 10_000, "longest inline expression in characters"),
    Option("pipeline.max-nodes", "int", 1000, "most nodes (sources, transforms, sinks) in a pipeline"),
    Option("pipeline.max-parallelism-limit", "int", 32768, "largest max_parallelism (number of key groups) a pipeline may set (Flink's upper bound)"),
    Option("pipeline.max-subtasks", "int", 10_000, "most subtasks (parallel instances summed over vertices) in a job"),
    Option("pipeline.max-channels", "int", 100_000, "most channels between subtasks in a job (an all-to-all edge of parallelism p has p*p)"),
    Option("taskmanager.network.max-frame-size", "int", 64 * 1024 * 1024, "largest data-plane websocket frame (and encoded batch) in bytes; a peer sending more is disconnected"),
)

_BY_KEY = {o.key: o for o in OPTIONS}


class Configuration(Mapping[str, Any]):
    """An immutable, typed view of the effective configuration."""

    def __init__(self, values: Mapping[str, Any], explicit: frozenset[str] = frozenset()) -> None:
        self._values = dict(values)
        #: keys set by a file, the environment or an override (not left at their default)
        self.explicit = explicit

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Configuration:
        """A copy with ``overrides`` applied (validated like ``-D``)."""
        values = dict(self._values)
        for k, v in overrides.items():
            values[k] = _option(k).check(v)
        return Configuration(values, self.explicit | frozenset(overrides))


def _option(key: str) -> Option:
    opt = _BY_KEY.get(key)
    if opt is None:
        import difflib

        close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; `streamlet config` lists every key"
        raise ConfigError(f"unknown config key {key!r}{hint}")
    return opt


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        full = f"{prefix}{k}"
        if isinstance(v, Mapping) and full not in _BY_KEY:
            out.update(_flatten(v, full + "."))
        else:
            out[full] = v
    return out


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["a.b=1", ...]`` from ``-D`` flags to a dict; raises on a pair without ``=``."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"-D {p!r}: expected key=value, e.g. -D rest.port=8082")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load(config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
         env: Mapping[str, str] | None = None) -> Configuration:
    """The effective configuration (see the module docstring for precedence)."""
    values = {o.key: (o.parse(o.default) if o.default is not None else None) for o in OPTIONS}
    explicit: set[str] = set()
    if config_file is not None:
        path = Path(config_file)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing --config") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {str(path)!r}: expected a map of key: value")
        for k, v in _flatten(data).items():
            values[k] = _option(k).check(v)
            explicit.add(k)
    env = os.environ if env is None else env
    env_keys = {("STREAMLET__" + o.key.replace(".", "__").replace("-", "_")).upper(): o for o in OPTIONS}
    for name, value in env.items():
        opt = env_keys.get(name.upper())
        if opt is not None:
            values[opt.key] = opt.check(value)
            explicit.add(opt.key)
    if os.environ.get("STREAMLET_TOKEN") and env is os.environ and values["security.auth.token"] is None:
        values["security.auth.token"] = os.environ["STREAMLET_TOKEN"]
    for k, v in (overrides or {}).items():
        values[k] = _option(k).check(v)
        explicit.add(k)
    if values["security.auth.token"] is None and values["security.auth.token-file"]:
        values["security.auth.token"] = _read_token(values["security.auth.token-file"])
    return Configuration(values, frozenset(explicit))


def _read_token(path: str) -> str:
    """The first line of the token file (the token itself is never put in a message)."""
    try:
        line = Path(path).read_text().splitlines()[0].strip() if Path(path).stat().st_size else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"security.auth.token-file: cannot read {path!r}: {type(exc).__name__}; give a readable "
                          "file whose first line is the token") from None
    if not line:
        raise ConfigError(f"security.auth.token-file: {path!r} is empty; its first line must be the token")
    return line


#: keys whose values are secrets: shown as ``******`` wherever a configuration is displayed
SECRET_KEYS = ("security.auth.token", "s3.secret-key")


def render_yaml(config: Mapping[str, Any] | None = None, hide_secrets: bool = False) -> str:
    """The configuration as commented YAML (defaults when ``config`` is None); ``hide_secrets``
    replaces the values of :data:`SECRET_KEYS` (for display; a file handed to a child process
    needs them)."""
    lines = ["# streamlet configuration: every key with its default (generated by `streamlet config --defaults`).",
             "# Override with -D key=value or STREAMLET__A__B environment variables.", ""]
    for o in OPTIONS:
        value = o.default if config is None else config[o.key]
        if hide_secrets and o.key in SECRET_KEYS and value is not None:
            value = "******"
        if o.type == "duration" and config is not None and value is not None:
            value = f"{int(round(value * 1000))}ms"
        lines.append(f"# {o.description}")
        lines.append(f"{o.key}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
        lines.append("")
    return "\n".join(lines)
