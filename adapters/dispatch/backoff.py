"""How long to wait before the next attempt: exponential backoff with jitter (tenacity's
`wait_exponential_jitter`), never less than a Retry-After the tool sent.

    wait(attempt) = min(max_backoff, base * 2**(attempt-1) + uniform(0, base))

`attempt` counts the calls already made (1 after the first failure). The jitter spreads the
retries of many rows that failed together (a tool outage) so they do not return in a herd.
"""
from __future__ import annotations

from tenacity import RetryCallState, wait_exponential_jitter

RETRY_AFTER_CAP = 24 * 3600.0  # a Retry-After beyond a day is treated as a day


def backoff_seconds(policy, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1` under `policy` (a catalog RetryPolicy)."""
    base = float(policy.base_backoff_seconds)
    wait = wait_exponential_jitter(multiplier=base, max=float(policy.max_backoff_seconds), jitter=base,
                                   min=0)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = max(1, int(attempt))
    seconds = float(wait(state)) if base > 0 else 0.0
    if retry_after is not None and retry_after > 0:
        seconds = max(seconds, min(float(retry_after), RETRY_AFTER_CAP))
    return seconds


__all__ = ["backoff_seconds"]
