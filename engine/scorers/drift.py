"""Drift: rolling per-feature distributions of what is scored, and PSI against the artifact's reference.

Every scored account adds one observation per feature: the bin its value falls in, using the
artifact's reference bins (numeric: the training deciles, bins[i] = bisect_right(edges, value),
and a last bin for missing/invalid; categorical: each category, then "other", then missing).
A store keeps the counts in time buckets (default: 24 buckets of one hour = a rolling 24 h
window); `counts()` sums the buckets inside the window.

PSI (population stability index) of one feature, with a = observed shares and e = reference shares,
each floored at EPSILON = 1e-4 so an empty bin stays finite:

    PSI = Σ_i (a_i − e_i) · ln(a_i / e_i)

Rule of thumb: < 0.1 stable, 0.1–0.2 moderate shift, > 0.2 significant. A feature with PSI above
the threshold (0.2 by default) is *drifted*; `drift_alert` is true when any feature is drifted,
and only once the window holds `min_observations` (default 200) observations, since PSI over a
handful of accounts is noise (its expected value with no drift is about (bins − 1) / n).

Two stores, one interface (`record(model, fields)`, `counts(model)`, `reset(model)`):
InProcessDriftStore for the embedded default (one process), RedisDriftStore for production
(hash counters `<prefix>drift:<model>:<bucket>`, field `<feature>:<bin>` and `_n`, shared by every
worker; increments are buffered and sent in one pipeline every `flush_every` observations or
`flush_seconds`, so scoring does not wait on Redis; during a Redis outage up to `max_buffer`
observations are kept for the next flush, and the excess is counted in `dropped`; after a failed
flush, recording tries again only after `retry_seconds`, so a frozen Redis costs one timeout per
process per retry, not one per second).
Recording one observation appends to a deque; counting happens in batches, so observing costs
about a microsecond.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from itertools import chain
from operator import getitem
from typing import Iterable, Protocol

from .errors import ScorerError

EPSILON = 1e-4
DEFAULT_THRESHOLD = 0.2
DEFAULT_MIN_OBSERVATIONS = 200
TOTAL = "_n"
log = logging.getLogger("postsale.scorers.drift")


class DriftStoreError(ScorerError):
    """The drift store cannot be read (e.g. Redis is down)."""


def psi(expected: Iterable[float], actual: Iterable[float], epsilon: float = EPSILON) -> float:
    """PSI between two distributions given as shares (or counts: both are normalised to sum 1)."""
    e = list(expected)
    a = list(actual)
    if len(e) != len(a):
        raise ValueError(f"{len(e)} reference bins and {len(a)} observed bins")
    se, sa = sum(e), sum(a)
    if se <= 0 or sa <= 0:
        raise ValueError("a distribution with no mass")
    total = 0.0
    for ei, ai in zip(e, a):
        ei = max(ei / se, epsilon)
        ai = max(ai / sa, epsilon)
        total += (ai - ei) * math.log(ai / ei)
    return total


class DriftStore(Protocol):
    def record(self, model: str, fields) -> None:
        """One observation of `model`: +1 on each field (`<feature>:<bin>`) and on `_n`. `fields` is
        any iterable of field names; it may be consumed later (when the batch is counted)."""

    def counts(self, model: str) -> dict[str, int]:
        """Field → count over the rolling window (flushes first where there is a buffer)."""

    def reset(self, model: str | None = None) -> None:
        """Forget the counts of one model (or of every model)."""


class _Pending:
    """Observations waiting to be counted: a deque (append and popleft are thread-safe), drained
    into per-(model, bucket) Counters in batches, so that recording one costs well under a µs."""

    def __init__(self):
        self.queue: deque = deque()

    def add(self, model: str, bucket: int, fields) -> None:
        self.queue.append((model, bucket, fields))

    def __len__(self) -> int:
        return len(self.queue)

    def drain(self) -> dict[tuple[str, int], Counter]:
        q = self.queue
        items = []
        for _ in range(len(q)):
            try:
                items.append(q.popleft())
            except IndexError:
                break
        grouped: dict[tuple[str, int], list] = {}
        for model, bucket, fields in items:
            grouped.setdefault((model, bucket), []).append(fields)
        out = {}
        for key, many in grouped.items():
            c = Counter(chain.from_iterable(many))
            c[TOTAL] += len(many)
            out[key] = c
        return out


class InProcessDriftStore:
    """Counts in this process's memory, in time buckets (the embedded default)."""

    def __init__(self, window_seconds: float = 86400.0, bucket_seconds: float = 3600.0, clock=time.time,
                 batch: int = 256):
        if bucket_seconds <= 0 or window_seconds < bucket_seconds:
            raise ValueError("need 0 < bucket_seconds <= window_seconds")
        self.window_seconds = window_seconds
        self.bucket_seconds = bucket_seconds
        self.buckets = math.ceil(window_seconds / bucket_seconds)
        self.clock = clock
        self.batch = batch
        self._data: dict[str, dict[int, Counter]] = {}
        self._pending = _Pending()
        self._lock = threading.Lock()

    def record(self, model: str, fields) -> None:
        """`fields`: an iterable of field names, consumed when the batch is counted."""
        self._pending.add(model, int(self.clock() // self.bucket_seconds), fields)
        if len(self._pending) >= self.batch:
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            for (model, b), c in self._pending.drain().items():
                per_model = self._data.setdefault(model, {})
                if b in per_model:
                    per_model[b].update(c)
                else:
                    per_model[b] = c
                    for old in [k for k in per_model if k <= b - self.buckets]:
                        del per_model[old]

    def counts(self, model: str) -> dict[str, int]:
        self._drain()
        now = int(self.clock() // self.bucket_seconds)
        out: Counter = Counter()
        with self._lock:
            for b, c in self._data.get(model, {}).items():
                if now - self.buckets < b <= now:
                    out.update(c)
        return dict(out)

    def reset(self, model: str | None = None) -> None:
        self._drain()
        with self._lock:
            if model is None:
                self._data.clear()
            else:
                self._data.pop(model, None)


class RedisDriftStore:
    """Counts in Redis hashes shared by every worker: `<prefix>drift:<model>:<bucket>`.

    `client` is a redis.Redis (or a URL). Each bucket key expires after the window plus one bucket.
    """

    def __init__(self, client, prefix: str = "postsale:", window_seconds: float = 86400.0,
                 bucket_seconds: float = 3600.0, flush_every: int = 100, flush_seconds: float = 1.0,
                 max_buffer: int = 100_000, retry_seconds: float = 5.0, clock=time.time):
        if isinstance(client, str):
            import redis
            client = redis.Redis.from_url(client, socket_timeout=2)
        if bucket_seconds <= 0 or window_seconds < bucket_seconds:
            raise ValueError("need 0 < bucket_seconds <= window_seconds")
        self.client = client
        self.prefix = prefix
        self.window_seconds = window_seconds
        self.bucket_seconds = bucket_seconds
        self.buckets = math.ceil(window_seconds / bucket_seconds)
        self.ttl = int(math.ceil(window_seconds + bucket_seconds))
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self.clock = clock
        self.dropped = 0
        self._pending = _Pending()
        self._unsent: dict[tuple[str, int], Counter] = {}   # counted, not yet in Redis
        self._unsent_n = 0
        self._last_flush = clock()
        self.retry_seconds = retry_seconds
        self._retry_at = 0.0  # after a failed flush, recording does not try again before this
        self._lock = threading.Lock()

    def key(self, model: str, bucket: int) -> str:
        return f"{self.prefix}drift:{model}:{bucket}"

    def record(self, model: str, fields) -> None:
        """`fields`: an iterable of field names, consumed when the buffer is flushed."""
        now = self.clock()
        self._pending.add(model, int(now // self.bucket_seconds), fields)
        if (len(self._pending) >= self.flush_every or now - self._last_flush >= self.flush_seconds) \
                and now >= self._retry_at:
            self.flush(raise_errors=False)

    def _collect(self) -> None:
        """Move the pending observations into the unsent counters (under the lock)."""
        for k, c in self._pending.drain().items():
            if k in self._unsent:
                self._unsent[k].update(c)
            else:
                self._unsent[k] = c
            self._unsent_n += c[TOTAL]

    def flush(self, raise_errors: bool = True) -> None:
        """Send the buffered increments in one pipeline."""
        with self._lock:
            self._collect()
            buf, n = self._unsent, self._unsent_n
            self._unsent, self._unsent_n = {}, 0
            self._last_flush = self.clock()
        if not buf:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for (model, b), c in buf.items():
                key = self.key(model, b)
                for field, count in c.items():
                    pipe.hincrby(key, field, count)
                pipe.expire(key, self.ttl)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - scoring must not fail because Redis did
            with self._lock:
                if self._unsent_n + n <= self.max_buffer:
                    for k, c in buf.items():
                        self._unsent.setdefault(k, Counter()).update(c)
                    self._unsent_n += n
                else:
                    self.dropped += n
                kept = self._unsent_n
                self._retry_at = self.clock() + self.retry_seconds
            log.warning("drift counts not sent to Redis (%s: %s); %d observations kept for the next flush",
                        type(exc).__name__, exc, kept)
            if raise_errors:
                raise DriftStoreError(f"Redis drift store: {type(exc).__name__}: {exc}") from exc

    @property
    def buffered(self) -> int:
        """Observations recorded here and not yet in Redis."""
        return len(self._pending) + self._unsent_n

    def counts(self, model: str) -> dict[str, int]:
        self.flush(raise_errors=False)
        now = int(self.clock() // self.bucket_seconds)
        keys = [self.key(model, b) for b in range(now - self.buckets + 1, now + 1)]
        try:
            pipe = self.client.pipeline(transaction=False)
            for k in keys:
                pipe.hgetall(k)
            hashes = pipe.execute()
        except Exception as exc:  # noqa: BLE001
            raise DriftStoreError(f"Redis drift store: {type(exc).__name__}: {exc}") from exc
        out: Counter = Counter()
        for h in hashes:
            for f, n in h.items():
                out[f.decode() if isinstance(f, bytes) else f] += int(n)
        return dict(out)

    def reset(self, model: str | None = None) -> None:
        with self._lock:
            self._collect()
            self._unsent = {k: c for k, c in self._unsent.items() if model is not None and k[0] != model}
            self._unsent_n = sum(c[TOTAL] for c in self._unsent.values())
        pattern = f"{self.prefix}drift:{model + ':' if model else ''}*"
        keys = list(self.client.scan_iter(match=pattern, count=500))
        if keys:
            self.client.delete(*keys)


class DriftMonitor:
    """Records observations for scorers and reports PSI per feature against their references."""

    def __init__(self, store: DriftStore | None = None, threshold: float = DEFAULT_THRESHOLD,
                 min_observations: int = DEFAULT_MIN_OBSERVATIONS):
        self.store = store if store is not None else InProcessDriftStore()
        self.threshold = threshold
        self.min_observations = min_observations
        self._fields: dict[str, tuple] = {}

    def _field_table(self, scorer) -> tuple:
        t = self._fields.get(scorer.model_version)
        if t is None:
            t = tuple(tuple(f"{name}:{b}" for b in range(len(scorer.reference[name])))
                      for name in scorer.feature_names)
            self._fields[scorer.model_version] = t
        return t

    def observe(self, scorer, bins: list[int]) -> None:
        """One scored account: `bins` as filled by scorer.score(facts, bins)."""
        self.store.record(scorer.model_version, map(getitem, self._field_table(scorer), bins))

    def report(self, scorer) -> dict:
        """{"model", "observations", "psi": {feature: value}, "drifted": [...], "drift_alert", ...}."""
        base = {"model": scorer.model_version, "threshold": self.threshold,
                "min_observations": self.min_observations}
        try:
            counts = self.store.counts(scorer.model_version)
        except DriftStoreError as exc:
            return {**base, "observations": None, "psi": {}, "drifted": [], "drift_alert": False,
                    "error": str(exc)}
        n = counts.get(TOTAL, 0)
        values: dict[str, float | None] = {}
        for name, fields in zip(scorer.feature_names, self._field_table(scorer)):
            observed = [counts.get(f, 0) for f in fields]
            values[name] = round(psi(scorer.reference[name], observed), 6) if n else None
        drifted = ([k for k, v in values.items() if v is not None and v > self.threshold]
                   if n >= self.min_observations else [])
        return {**base, "observations": n, "psi": values, "drifted": drifted, "drift_alert": bool(drifted)}
