"""Configuration: declared defaults, precedence (-D > env > file > defaults), typed values,
errors that name the key, and the rendered YAML that `streamlet config` prints."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamlet import config as cfg
from streamlet.errors import ConfigError

NO_ENV: dict[str, str] = {}


def test_every_key_declared_once_with_doc_and_type() -> None:
    keys = [o.key for o in cfg.OPTIONS]
    assert len(keys) == len(set(keys))
    for o in cfg.OPTIONS:
        assert o.doc and o.type in ("int", "str", "bool", "duration", "float")
    # the Flink key names DESIGN.md promises
    for key in ("jobmanager.rpc.address", "jobmanager.rpc.port", "rest.address", "rest.port",
                "taskmanager.numberOfTaskSlots", "parallelism.default", "pipeline.max-parallelism",
                "state.backend.type", "execution.checkpointing.dir", "execution.checkpointing.interval",
                "execution.checkpointing.mode", "execution.checkpointing.incremental",
                "execution.checkpointing.num-retained", "heartbeat.interval", "heartbeat.timeout",
                "restart-strategy.type", "execution.buffer-timeout", "pipeline.auto-watermark-interval"):
        assert key in keys


def test_defaults() -> None:
    c = cfg.load(env=NO_ENV)
    assert set(c) == {o.key for o in cfg.OPTIONS}
    assert c["rest.port"] == 8081
    assert c["parallelism.default"] == 1
    assert c["pipeline.max-parallelism"] == 128
    assert c["execution.buffer-timeout"] == pytest.approx(0.1)
    assert c["heartbeat.timeout"] == pytest.approx(10.0)
    assert c["execution.checkpointing.incremental"] is True
    assert c["security.auth.token"] is None


def test_precedence(tmp_path: Path) -> None:
    f = tmp_path / "streamlet.yaml"
    f.write_text("rest.port: 9000\nparallelism.default: 2\nheartbeat:\n  interval: 3s\n"
                 "taskmanager: {numberOfTaskSlots: 4}\n")
    env = {"STREAMLET__REST__PORT": "9100", "STREAMLET__PIPELINE__MAX_PARALLELISM": "256", "OTHER": "x"}
    c = cfg.load(f, overrides={"rest.port": "9200"}, env=env)
    assert c["rest.port"] == 9200                       # -D beats env and file
    assert c["pipeline.max-parallelism"] == 256         # env (dash written as _) beats the default
    assert c["parallelism.default"] == 2                # file beats the default
    assert c["heartbeat.interval"] == pytest.approx(3.0)  # nested maps flatten to dotted keys
    assert c["taskmanager.numberOfTaskSlots"] == 4
    assert cfg.load(f, env=env)["rest.port"] == 9100     # env beats file
    assert cfg.load(f, env=NO_ENV)["rest.port"] == 9000


@pytest.mark.parametrize("value, seconds", [
    ("10s", 10.0), ("100ms", 0.1), ("1min", 60.0), ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0),
    ("1.5s", 1.5), (250, 0.25), ("250", 0.25), (" 3 sec ", 3.0),
])
def test_durations(value: object, seconds: float) -> None:
    assert cfg.parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "10 parsecs", True, "-1s", ""])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ConfigError, match="expected a duration"):
        cfg.parse_duration(value, "heartbeat.interval")


@pytest.mark.parametrize("key, value, parsed", [
    ("cluster.evenly-spread-out-slots", "off", False),
    ("cluster.evenly-spread-out-slots", "YES", True),
    ("rest.port", "8082", 8082),
    ("state.backend.type", "rocksdb", "rocksdb"),
])
def test_typed_overrides(key: str, value: str, parsed: object) -> None:
    assert cfg.load(overrides={key: value}, env=NO_ENV)[key] == parsed


def test_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'rest.prot'; did you mean 'rest.port'\?"):
        cfg.load(overrides={"rest.prot": "1"}, env=NO_ENV)
    with pytest.raises(ConfigError, match=r"config key 'rest.port': .*expected a int"):
        cfg.load(overrides={"rest.port": "eighty"}, env=NO_ENV)
    with pytest.raises(ConfigError, match="config key 'cluster.evenly-spread-out-slots'"):
        cfg.load(overrides={"cluster.evenly-spread-out-slots": "maybe"}, env=NO_ENV)
    with pytest.raises(ConfigError, match="rest.port"):
        cfg.load(env={"STREAMLET__REST__PORT": "x"})
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load(tmp_path / "missing.yaml", env=NO_ENV)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rest.port: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfg.load(bad, env=NO_ENV)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a map"):
        cfg.load(bad, env=NO_ENV)
    bad.write_text("rest: {prot: 1}\n")
    with pytest.raises(ConfigError, match="did you mean 'rest.port'"):
        cfg.load(bad, env=NO_ENV)


def test_parse_overrides() -> None:
    assert cfg.parse_overrides(["a.b=1", " c = x=y "]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(ConfigError, match="expected key=value"):
        cfg.parse_overrides(["rest.port"])


def test_with_overrides_is_a_validated_copy() -> None:
    c = cfg.load(env=NO_ENV)
    d = c.with_overrides({"rest.port": "1234"})
    assert (c["rest.port"], d["rest.port"]) == (8081, 1234)
    with pytest.raises(ConfigError):
        c.with_overrides({"no.such.key": 1})


def test_rendered_yaml_loads_back_to_the_same_configuration(tmp_path: Path) -> None:
    effective = cfg.load(overrides={"rest.port": "9999", "heartbeat.interval": "1500ms"}, env=NO_ENV)
    for rendered in (cfg.render_yaml(None), cfg.render_yaml(effective)):
        data = yaml.safe_load(rendered)
        assert set(data) == {o.key for o in cfg.OPTIONS}
        for o in cfg.OPTIONS:
            assert f"# {o.description}\n{o.key}:" in rendered
    f = tmp_path / "effective.yaml"
    f.write_text(cfg.render_yaml(effective))
    assert dict(cfg.load(f, env=NO_ENV)) == dict(effective)
    f.write_text(cfg.render_yaml(None))
    assert dict(cfg.load(f, env=NO_ENV)) == dict(cfg.load(env=NO_ENV))


def test_a_key_that_is_not_used_yet_is_refused_when_set() -> None:
    opt = cfg.Option("feature.size", "int", 3, "size of a feature", unused="the feature arrives later")
    assert "not used yet: the feature arrives later" in opt.description
    with pytest.raises(ConfigError, match="config key 'feature.size' is not used yet"):
        opt.check("5")
    # its default (what `streamlet config --defaults` writes) is accepted
    assert opt.check("3") == 3


def test_checkpointing_and_restart_keys_are_in_use() -> None:
    for key in ("execution.checkpointing.interval", "execution.checkpointing.mode", "execution.checkpointing.dir",
                "execution.checkpointing.num-retained", "restart-strategy.type"):
        assert "not used yet" not in next(o for o in cfg.OPTIONS if o.key == key).description
    c = cfg.load(overrides={"execution.checkpointing.interval": "10s", "restart-strategy.type": "fixed-delay",
                            "execution.checkpointing.mode": "at_least_once"}, env=NO_ENV)
    assert (c["execution.checkpointing.interval"], c["restart-strategy.type"]) == (10.0, "fixed-delay")
    with pytest.raises(ConfigError, match="'sometimes' is not one of none, fixed-delay"):
        cfg.load(overrides={"restart-strategy.type": "sometimes"}, env=NO_ENV)


def test_every_key_is_read_by_the_code_or_refused() -> None:
    """No key is documented but ignored: each is read somewhere outside config.py, or is unused."""
    import streamlet

    root = Path(streamlet.__file__).parent
    text = "\n".join(p.read_text() for p in root.rglob("*.py") if p.name != "config.py")
    for o in cfg.OPTIONS:
        if o.unused is None and o.key != "security.auth.token-file":  # read by load() itself
            assert f'"{o.key}"' in text, f"{o.key} is declared but never read; mark it unused or use it"


def test_state_backend_type_is_checked() -> None:
    with pytest.raises(ConfigError, match="'nonsense' is not one of heap, rocksdb"):
        cfg.load(overrides={"state.backend.type": "nonsense"}, env=NO_ENV)
    assert cfg.load(overrides={"state.backend.type": "rocksdb"}, env=NO_ENV)["state.backend.type"] == "rocksdb"
