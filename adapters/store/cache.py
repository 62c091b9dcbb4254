"""Redis as a cache the service can do without.

Every call goes through `RedisGuard.call`: a Redis error (refused, reset, timed out) is logged
once per outage, counted in `postsale_redis_errors_total`, and answered with the caller's
default; for `pause` seconds after it Redis is not asked at all, so a frozen Redis costs one
socket timeout per process per pause instead of one per request. What Redis held is either
also in the database (idempotency: the key's row is the arbiter) or only saves work.

    ok ──a call fails──▶ down (bypassed) ──pause elapsed──▶ the next call tries again
"""
from __future__ import annotations

import logging
import threading
import time

from adapters import metrics

log = logging.getLogger("postsale.redis")

OK, DOWN, NONE = "ok", "down", "none"


def redis_errors() -> tuple:
    """What a Redis that is away raises: redis-py's errors and the sockets' own."""
    from redis.exceptions import RedisError
    return RedisError, OSError


class RedisGuard:
    def __init__(self, client, what: str = "cache", pause: float = 5.0, clock=time.monotonic):
        self.client = client
        self.what = what
        self.pause = pause
        self.clock = clock
        self._until = 0.0
        self._down_since: float | None = None
        self._errors = redis_errors() if client is not None else ()
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.client is None:
            return NONE
        return DOWN if self._down_since is not None else OK

    def usable(self) -> bool:
        return self.client is not None and self.clock() >= self._until

    def call(self, op: str, fn, *args, default=None, **kwargs):
        """`fn(*args, **kwargs)`, or `default` when Redis is away (or bypassed after a failure)."""
        if not self.usable():
            return default
        try:
            out = fn(*args, **kwargs)
        except self._errors as exc:
            self.failed(op, exc)
            return default
        if self._down_since is not None:
            self._recovered()
        return out

    def failed(self, op: str, exc: BaseException) -> None:
        metrics.REDIS_ERRORS.labels(self.what, op).inc()
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = self.clock()
            self._until = self.clock() + self.pause
        if first:
            log.warning("%s: Redis unavailable on %s (%s: %s); bypassed, tried again every %ss",
                        self.what, op, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "",
                        self.pause)

    def _recovered(self) -> None:
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("%s: Redis is back after %.1fs", self.what, self.clock() - since)

    def check(self) -> str:
        """ok | down | none, asking Redis (PING) unless it is being bypassed."""
        if self.client is None:
            return NONE
        if not self.usable():
            return DOWN
        return OK if self.call("ping", self.client.ping, default=False) else DOWN


__all__ = ["RedisGuard", "redis_errors", "OK", "DOWN", "NONE"]
