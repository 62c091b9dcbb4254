"""A circuit breaker per tool, in process (each worker judges the tools it calls).

    closed ──N consecutive failures──▶ open ──cool-down elapsed──▶ half-open
      ▲                                 ▲                              │ one trial call
      └──────────── trial succeeds ─────┼──────── trial fails ─────────┘

While open, the dispatcher does not call the tool: rows are deferred to when the cool-down
ends, without spending an attempt. In half-open exactly one call at a time is let through;
its outcome closes or re-opens the circuit. Failures are what say the tool itself is unwell:
timeouts and unavailability (5xx, refused, reset). A rejection (4xx) or a rate limit is the
tool answering, and neither counts nor resets the count.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from adapters.tools.base import ToolError, ToolTimeout, ToolUnavailable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def counts_as_failure(err: BaseException) -> bool:
    return isinstance(err, (ToolTimeout, ToolUnavailable)) or not isinstance(err, ToolError)


@dataclass(frozen=True)
class Permit:
    """The answer to `allow()`: may the call go ahead, and if not, in how many seconds to ask again.
    `trial` is true for the single call of a half-open circuit."""

    allowed: bool
    wait: float = 0.0
    trial: bool = False


class CircuitBreaker:
    def __init__(self, tool: str, threshold: int = 5, cooldown: float = 30.0, clock=time.monotonic):
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.tool = tool
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self.clock() - self._opened_at >= self.cooldown:
                return HALF_OPEN
            return self._state

    def allow(self) -> Permit:
        with self._lock:
            if self._state == CLOSED:
                return Permit(True)
            t = self.clock()
            if self._state == OPEN:
                left = self._opened_at + self.cooldown - t
                if left > 0:
                    return Permit(False, left)
                self._state = HALF_OPEN
            if self._trial:  # half-open: one trial at a time; ask again shortly
                return Permit(False, min(1.0, max(self.cooldown, 0.05)))
            self._trial = True
            return Permit(True, trial=True)

    def release(self, permit: Permit) -> None:
        """The permitted call did not happen after all (deferred, suppressed)."""
        if permit.trial:
            with self._lock:
                self._trial = False

    def success(self, permit: Permit | None = None) -> None:
        with self._lock:
            self._state, self._failures, self._trial = CLOSED, 0, False

    def failure(self, permit: Permit | None = None) -> None:
        with self._lock:
            if self._state == HALF_OPEN or (permit is not None and permit.trial):
                self._state, self._opened_at, self._trial = OPEN, self.clock(), False
                return
            self._failures += 1
            if self._state == CLOSED and self._failures >= self.threshold:
                self._state, self._opened_at = OPEN, self.clock()

    def outcome(self, permit: Permit, err: BaseException | None) -> None:
        """Record a call's outcome: None is success."""
        if err is None:
            self.success(permit)
        elif counts_as_failure(err):
            self.failure(permit)
        else:
            self.release(permit)

    def describe(self) -> dict:
        return {"tool": self.tool, "state": self.state, "failures": self._failures}


class Breakers:
    """One breaker per tool, made on first use."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, clock=time.monotonic):
        self.threshold, self.cooldown, self.clock = threshold, cooldown, clock
        self._by_tool: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def __getitem__(self, tool: str) -> CircuitBreaker:
        with self._lock:
            b = self._by_tool.get(tool)
            if b is None:
                b = self._by_tool[tool] = CircuitBreaker(tool, self.threshold, self.cooldown, self.clock)
            return b

    def open_tools(self) -> set[str]:
        """Tools whose circuit is open right now (not half-open)."""
        with self._lock:
            items = list(self._by_tool.items())
        return {t for t, b in items if b.state == OPEN}

    def describe(self) -> list[dict]:
        with self._lock:
            return [b.describe() for b in self._by_tool.values()]


__all__ = ["CircuitBreaker", "Breakers", "Permit", "CLOSED", "OPEN", "HALF_OPEN", "counts_as_failure"]
