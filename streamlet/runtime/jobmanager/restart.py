"""Restart strategies (Flink's RestartBackoffTimeStrategy): after a failure, whether the job
restarts and after how long.  Time is the JobMaster's injected clock (seconds)."""

from __future__ import annotations

import random
from collections import deque

from streamlet.graph.settings import RestartSettings


class RestartStrategy:
    """``next_delay(now)`` after each failure: the wait before the restart, or None (the job fails)."""

    def __init__(self, settings: RestartSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng or random.Random()
        self.restarts = 0
        self._failures: deque[float] = deque()
        self._backoff = settings.initial_backoff
        self._last_failure: float | None = None
        self._since_reset = 0

    def next_delay(self, now: float) -> float | None:
        s = self.settings
        if s.strategy == "none":
            return None
        if s.strategy == "fixed-delay":
            if self.restarts >= s.attempts:
                return None
            self.restarts += 1
            return s.delay
        if s.strategy == "failure-rate":
            self._failures.append(now)
            while self._failures and self._failures[0] < now - s.failure_rate_interval:
                self._failures.popleft()
            if len(self._failures) > s.max_failures_per_interval:
                return None
            self.restarts += 1
            return s.delay
        # exponential-delay
        if self._last_failure is not None and now - self._last_failure >= s.reset_backoff_threshold:
            self._backoff = s.initial_backoff
            self._since_reset = 0
        elif self._last_failure is not None:
            self._backoff = min(self._backoff * s.backoff_multiplier, s.max_backoff)
        self._last_failure = now
        if self._since_reset >= s.attempts_before_reset_backoff:
            return None
        self._since_reset += 1
        self.restarts += 1
        jitter = self._backoff * s.jitter_factor
        return max(0.0, self._backoff + self.rng.uniform(-jitter, jitter))
