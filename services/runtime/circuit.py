"""A circuit breaker per agency: stop calling an agency that is down, probe it, close when it answers.

Written here because the maintained breakers (pybreaker) are built around synchronous calls and their
own exception handling, while ours must only *decide* (the connector host routes a request to a delay
tier instead of calling) and must count only transient failures, never business rejections.

closed ──(``threshold`` transient failures in a row)──► open ──(``cooldown_s``)──► half-open
  ▲                                                                                  │
  └───────────────(the probe succeeds)──── half-open ──(the probe fails)──► open ◄───┘
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
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self.clock() - self._opened_at >= self.cooldown_s:
            self._set(CircuitState.HALF_OPEN)
        return self._state

    def allows_call(self) -> bool:
        """Whether to call the agency now; in half-open, only one probe at a time goes through."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._state is not CircuitState.CLOSED:
            self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._state is CircuitState.HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self.clock()
            self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self.on_change is not None:
                self.on_change(state)
