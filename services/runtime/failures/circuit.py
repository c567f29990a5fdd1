"""A circuit breaker per agency: stop calling an agency that is down, probe it, close when it answers.

Written here because the maintained breakers (pybreaker) are built around synchronous calls and their
own exception handling, while ours must only *decide* (the connector host routes a request to a delay
tier instead of calling) and must count only transient failures, never business rejections.

closed ──(``threshold`` transient failures in a row)──► open ──(``cooldown_s``)──► half-open
  ▲                                                                                  │
  └───────────────(the probe succeeds)──── half-open ──(the probe fails)──► open ◄───┘

Every probe ends: a success closes the circuit; a transient failure, an answer that proves nothing
about the agency's health (a reply it cannot read, such as a maintenance page served with status
200, or a bug of ours), or a probe not settled within ``probe_timeout_s`` reopens it for another
cooldown. A probe that never ended would leave the circuit half-open for ever, every request delayed
until its tiers ran out.

The breaker lives in one connector process: each instance of a connector learns the agency's health
from its own calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
        probe_timeout_s: float = 60.0,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.on_change = on_change
        self.probe_timeout_s = probe_timeout_s
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None

    @property
    def state(self) -> CircuitState:
        now = self.clock()
        if self._state is CircuitState.OPEN and now - self._opened_at >= self.cooldown_s:
            self._set(CircuitState.HALF_OPEN)
        elif self._probe_started is not None and now - self._probe_started >= self.probe_timeout_s:
            self._reopen()  # the probe's answer never came back: it ended as a failure
        return self._state

    def allows_call(self) -> bool:
        """Whether to call the agency now; in half-open, only one probe at a time goes through."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and self._probe_started is None:
            self._probe_started = self.clock()
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._probe_started = None
        if self._state is not CircuitState.CLOSED:
            self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self.threshold:
            self._reopen()

    def record_inconclusive(self) -> None:
        """An answer that says nothing of the agency's health: a probe ends and the circuit reopens;
        a closed circuit is left as it is (its count of failures in a row too)."""
        if self._state is CircuitState.HALF_OPEN:
            self._reopen()

    def _reopen(self) -> None:
        self._probe_started = None
        self._opened_at = self.clock()
        self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self.on_change is not None:
                self.on_change(state)
