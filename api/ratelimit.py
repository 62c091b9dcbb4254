"""Request rate limits per API key and scope (POSTSALE_RATE_LIMITS), so one key cannot occupy
every worker: a token bucket per (key, scope) — in Redis, shared by every worker on every host
(the dispatcher's bucket, adapters/dispatch/ratelimit.py), or in process on the embedded default
and while Redis is away. Over the limit: 429 with Retry-After, before any work."""
from __future__ import annotations

import math
from dataclasses import dataclass

from adapters.dispatch.ratelimit import make_rate_limiter

from .errors import TYPES, Problem


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int


class RequestLimits:
    def __init__(self, limits: dict, redis=None):
        self.rates = {scope: Rate(r["per_second"], r["burst"]) for scope, r in limits.items()}
        self.limiter = make_rate_limiter(redis, "postsale:api") if self.rates else None

    def check(self, key_id: str, scope: str) -> None:
        rate = self.rates.get(scope)
        if rate is None:
            return
        wait = self.limiter.acquire(f"{key_id}:{scope}", rate)
        if wait > 0:
            raise Problem(429, "Too many requests", f"this key may send {rate.per_second:g} '{scope}' requests a second "
                          f"(bursts of {rate.burst}); send again after Retry-After seconds", TYPES + "rate-limited",
                          retry_after=max(1, math.ceil(wait)))


__all__ = ["RequestLimits", "Rate"]
