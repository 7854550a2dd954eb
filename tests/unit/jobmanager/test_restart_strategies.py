"""Restart strategies: delays and give-up points as Flink documents them (values worked out here)."""

from __future__ import annotations

import random

from streamlet import config as cfg
from streamlet.graph.settings import RestartSettings, checkpoint_settings, restart_settings
from streamlet.runtime.jobmanager.restart import RestartStrategy


def test_none_never_restarts() -> None:
    assert RestartStrategy(RestartSettings("none")).next_delay(0.0) is None


def test_fixed_delay_counts_attempts() -> None:
    s = RestartStrategy(RestartSettings("fixed-delay", attempts=2, delay=3.0))
    assert [s.next_delay(t) for t in (0.0, 10.0, 20.0)] == [3.0, 3.0, None]


def test_failure_rate_counts_failures_within_the_interval() -> None:
    s = RestartStrategy(RestartSettings("failure-rate", max_failures_per_interval=2, failure_rate_interval=60.0,
                                        delay=1.0))
    assert s.next_delay(0.0) == 1.0
    assert s.next_delay(10.0) == 1.0
    assert s.next_delay(20.0) is None  # the third failure within 60 s
    s2 = RestartStrategy(RestartSettings("failure-rate", max_failures_per_interval=2, failure_rate_interval=60.0))
    assert [s2.next_delay(t) is not None for t in (0.0, 10.0, 100.0, 105.0)] == [True, True, True, True]


def test_exponential_delay_doubles_up_to_the_maximum_and_resets() -> None:
    s = RestartStrategy(RestartSettings("exponential-delay", initial_backoff=1.0, max_backoff=5.0,
                                        backoff_multiplier=2.0, reset_backoff_threshold=100.0, jitter_factor=0.0))
    assert [s.next_delay(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert s.next_delay(200.0) == 1.0  # ran 196 s without failure: back to the initial backoff


def test_exponential_jitter_stays_within_its_factor() -> None:
    s = RestartStrategy(RestartSettings("exponential-delay", initial_backoff=10.0, jitter_factor=0.1),
                        random.Random(1))
    d = s.next_delay(0.0)
    assert d is not None and 9.0 <= d <= 11.0


def test_defaults_follow_flink() -> None:
    conf = cfg.load(env={})
    assert restart_settings(None, conf, checkpointing=True).strategy == "fixed-delay"
    assert restart_settings(None, conf, checkpointing=True).attempts == 2**31 - 1
    assert restart_settings(None, conf, checkpointing=False).strategy == "none"
    conf2 = cfg.load(overrides={"restart-strategy.type": "failure-rate",
                                "restart-strategy.failure-rate.delay": "7s"}, env={})
    r = restart_settings(None, conf2, checkpointing=False)
    assert (r.strategy, r.delay) == ("failure-rate", 7.0)
    # the pipeline's restart: wins over the configuration
    assert restart_settings({"strategy": "none"}, conf2, checkpointing=True).strategy == "none"
    c = checkpoint_settings({"interval": 2.0}, cfg.load(overrides={"execution.checkpointing.num-retained": "5"},
                                                       env={}))
    assert (c.interval, c.retained, c.mode, c.timeout) == (2.0, 5, "exactly_once", 600.0)
