"""Rate limits per tool, from the catalog's `rate_limit: {per_second, burst}`.

A token bucket: `burst` tokens, refilled at `per_second`; each call takes one. With Redis the
bucket is one hash per tool (`<prefix>:rate:<tool>`) updated by a Lua script, so every worker
on every host draws from the same bucket and the tool sees at most `burst + per_second * t`
calls in any `t` seconds, however many workers run. The script reads Redis's own clock
(TIME), so the hosts' clocks do not matter. Without Redis (or while it is unreachable) each
process keeps its own bucket: the limit then holds per process.

`acquire(tool, rate)` takes a token and returns 0, or returns the seconds until one will be
there (and takes nothing).
"""
from __future__ import annotations

import threading
import time

from adapters.store.cache import RedisGuard

def dispatch_guard(redis, what: str = "dispatch") -> RedisGuard:
    """The dispatcher leaves a failed Redis alone for 30 s: rate limits are kept per process and
    contact counts in the database meanwhile."""
    return RedisGuard(redis, what, pause=30.0)

TOKEN_BUCKET = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class LocalRateLimiter:
    """The same bucket in process memory (no Redis: the embedded setup, tests)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, tool: str, rate) -> float:
        per_second, burst = float(rate.per_second), float(rate.burst)
        with self._lock:
            t = self.clock()
            tokens, ts = self._buckets.get(tool, (burst, t))
            tokens = min(burst, tokens + max(0.0, t - ts) * per_second)
            if tokens >= 1:
                self._buckets[tool] = (tokens - 1, t)
                return 0.0
            self._buckets[tool] = (tokens, t)
            return (1 - tokens) / per_second


class RedisRateLimiter:
    """The bucket in Redis, shared by every worker; falls back to a local bucket when Redis
    does not answer (and for the next 30 s), so an outage of Redis does not stop dispatch."""

    def __init__(self, redis, prefix: str = "postsale", outage: RedisGuard | None = None):
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(TOKEN_BUCKET)
        self._local = LocalRateLimiter()
        self.outage = outage or dispatch_guard(redis)

    def acquire(self, tool: str, rate) -> float:
        wait = self.outage.call("rate", self._script, keys=[f"{self.prefix}:rate:{tool}"],
                                args=[float(rate.per_second), int(rate.burst)])
        return float(wait) if wait is not None else self._local.acquire(tool, rate)


def make_rate_limiter(redis=None, prefix: str = "postsale", outage: RedisGuard | None = None):
    return RedisRateLimiter(redis, prefix, outage) if redis is not None else LocalRateLimiter()


__all__ = ["LocalRateLimiter", "RedisRateLimiter", "dispatch_guard", "make_rate_limiter", "TOKEN_BUCKET"]
