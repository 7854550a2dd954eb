"""What the Kafka source and sink share: the client, its configuration, metadata and topics.

Every function here blocks (librdkafka network calls with timeouts): the JobMaster calls them
while enumerating splits (off its event loop), readers and writers from their own threads.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from streamlet.connectors.errors import ConnectorError
from streamlet.errors import PipelineDefinitionError

#: librdkafka's own log lines go to this logger (not to stderr)
LIBRDKAFKA_LOG = logging.getLogger("streamlet.kafka.librdkafka")
#: seconds a metadata request may take before the broker counts as unreachable
METADATA_TIMEOUT = 10.0
#: topic configs set on every topic streamlet creates: some brokers (tansu) answer DescribeConfigs
#: for topics without them in a way clients that read topic configs fail on
TOPIC_DEFAULTS = {"retention.ms": "-1", "retention.bytes": "-1"}


def client_module() -> Any:
    """The ``confluent_kafka`` module, or a PipelineDefinitionError saying how to install it."""
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        msg = "the kafka connector needs the confluent-kafka client; install it with: pip install 'streamlet[kafka]'"
        raise PipelineDefinitionError(msg) from exc
    return confluent_kafka


def base_config(bootstrap: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka settings common to every client: the brokers, logs into Python logging, then
    the user's ``properties`` (which win; values are passed as strings, as librdkafka wants)."""
    cfg: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOG,
                           "socket.connection.setup.timeout.ms": 10000}
    for k, v in properties.items():
        cfg[str(k)] = v if isinstance(v, (str, int, float, bool)) or callable(v) else str(v)
    return cfg


def make_client(kind: str, cfg: Mapping[str, Any], what: str) -> Any:
    """``confluent_kafka.<kind>(cfg)`` (Consumer, Producer, AdminClient); a property librdkafka
    refuses is a ConnectorError naming it (a typo in ``properties:``)."""
    ck = client_module()
    if kind == "AdminClient":
        from confluent_kafka.admin import AdminClient as cls
    else:
        cls = getattr(ck, kind)
    try:
        return cls(dict(cfg))
    except (ck.KafkaException, ValueError, TypeError) as exc:
        err = exc.args[0] if exc.args else exc
        text = err.str() if hasattr(err, "str") else str(err)
        raise ConnectorError(f"{what}: invalid kafka client configuration: {text}; fix properties:") from None


def is_pattern(topic: str) -> bool:
    """A subscription by regular expression: the name starts with ``^`` (librdkafka's rule)."""
    return topic.startswith("^")


def validate_topics(value: Any, where: str) -> list[str]:
    """``topic:`` as a list of names and ``^patterns``; each pattern must compile."""
    topics = value if isinstance(value, list) else [value]
    if not topics:
        raise PipelineDefinitionError("topic is empty; name at least one topic", f"{where}.topic")
    out = []
    for t in topics:
        if not isinstance(t, str) or not t:
            raise PipelineDefinitionError(f"expected a topic name, got {t!r}", f"{where}.topic")
        if is_pattern(t):
            try:
                re.compile(t)
            except re.error as exc:
                raise PipelineDefinitionError(f"topic pattern {t!r} is not a regular expression: {exc}",
                                              f"{where}.topic") from None
        elif not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", t):
            raise PipelineDefinitionError(
                f"{t!r} is not a valid topic name (letters, digits, '.', '_', '-'); a pattern starts with '^', "
                f"e.g. '^{t}'", f"{where}.topic")
        out.append(t)
    return out


def unreachable(what: str, bootstrap: str, exc: BaseException) -> str:
    """The message for a broker that does not answer (never includes credentials)."""
    reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
    return (f"{what}: cannot reach the kafka broker at {bootstrap!r}: {reason}; check that the broker runs and "
            "that bootstrap names its address (host:port)")


def list_topics(client: Any, what: str, bootstrap: str, timeout: float = METADATA_TIMEOUT) -> dict[str, int]:
    """Topic name -> number of partitions, from one metadata request for ALL topics.

    Asking for a named topic would make brokers with auto-creation create it; asking for all
    never creates anything.  Raises ConnectorError naming ``bootstrap`` when no broker answers.
    """
    ck = client_module()
    try:
        md = client.list_topics(timeout=timeout)
    except ck.KafkaException as exc:
        raise ConnectorError(unreachable(what, bootstrap, exc)) from None
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None and not name.startswith("__")}


def resolve_topics(wanted: list[str], existing: Mapping[str, int]) -> list[str]:
    """The existing topics named by ``wanted`` (names and ``^patterns``), in a stable order."""
    out: list[str] = []
    for w in wanted:
        if is_pattern(w):
            rx = re.compile(w)
            out.extend(t for t in sorted(existing) if rx.search(t) and t not in out)
        elif w in existing and w not in out:
            out.append(w)
    return out


def create_topics(admin: Any, topics: list[str], partitions: int, what: str, bootstrap: str,
                  config: Mapping[str, str] | None = None) -> None:
    """Create ``topics`` (``partitions`` each, replication 1, :data:`TOPIC_DEFAULTS` + ``config``);
    a topic that exists meanwhile is fine."""
    ck = client_module()
    from confluent_kafka.admin import NewTopic

    if not topics:
        return
    cfg = {**TOPIC_DEFAULTS, **(config or {})}
    futures = admin.create_topics([NewTopic(t, partitions, 1, config=cfg) for t in topics],
                                  operation_timeout=METADATA_TIMEOUT, request_timeout=METADATA_TIMEOUT)
    for topic, fut in futures.items():
        try:
            fut.result(timeout=METADATA_TIMEOUT)
        except ck.KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and hasattr(err, "code") and err.code() == ck.KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise ConnectorError(f"{what}: cannot create topic {topic!r} on {bootstrap!r}: {exc}") from None


def missing_topics_error(what: str, missing: list[str], bootstrap: str, existing: Mapping[str, int],
                         where_key: str) -> ConnectorError:
    """The error for topics that do not exist: names them, the broker, what exists and the fix."""
    have = ", ".join(sorted(existing)[:20]) or "none"
    return ConnectorError(
        f"{what}: topic {', '.join(map(repr, missing))} does not exist on {bootstrap!r} (topics there: {have}); "
        f"create it, fix the name, or set {where_key}: true to create it")
