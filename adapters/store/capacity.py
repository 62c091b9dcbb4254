"""Human capacity (policy 11): who gets a CSM touch beyond the mandatory reviews.

Two parts, so that the cap holds on any number of workers and hosts and the choice of who gets
a slot still ranks accounts by value rather than by arrival:

- a **threshold**: a touch is admitted only when its expected value is at least the
  (1 − share) quantile of the values recent decisions put on one (share = the part of decisions
  the queue can take, POSTSALE_CAPACITY_SHARE). Each process keeps its own window of recent
  values, a random sample of the same stream, so every process converges on the same threshold;
- **slots**: a touch above the threshold also takes one of the queue's slots for the period
  (POSTSALE_HUMAN_CAPACITY per POSTSALE_CAPACITY_PERIOD_DAYS), counted in the database with one
  conditional UPDATE, so two workers can never take the last slot twice. Mandatory reviews
  always go and are counted apart.

A dry run reads the threshold and the slots left without taking one (the count it reads is at
most a second old). A process that starts fills its window from the values recent recorded
decisions put on a touch (`seed_from_records`), so a restart or a deploy does not leave its first
decisions without a threshold, and a new worker starts on the threshold the others use.

On the decision path the slot is not taken while deciding: `deferred()` admits on the threshold
and notes the claim, and the decision store applies it in the decision's own transaction
(`apply_claims`), so a decision costs one commit and a slot is never held by a decision that
was not recorded. A claim that finds the queue full rolls the write back (SlotsTaken); the
process then knows the queue is full for that period and the caller decides again without it.
"""
from __future__ import annotations

import bisect
import threading
import time
from collections import deque

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.choose import Admission, Unlimited

from .db import transaction
from .models import CapacitySlot, Decision

WARMUP = 50


class ValueWindow:
    """The last `size` values, with their quantiles (kept sorted beside the arrival order)."""

    def __init__(self, size: int = 2000):
        self.size = size
        self._order: deque = deque()
        self._sorted: list = []
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            if len(self._order) >= self.size:
                old = self._order.popleft()
                del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._order.append(value)
            bisect.insort(self._sorted, value)

    def __len__(self) -> int:
        return len(self._order)

    def quantile(self, q: float) -> float | None:
        with self._lock:
            if not self._sorted:
                return None
            i = min(len(self._sorted) - 1, max(0, int(q * len(self._sorted))))
            return self._sorted[i]


@dataclass(frozen=True)
class SlotClaim:
    """A slot of `queue` for `period` that a decision will take when it is recorded; `limit`
    None for a policy review, which always goes and is counted apart."""
    queue: str
    period: str
    limit: int | None = None


class SlotsTaken(Exception):
    """The queue's last slot for the period went to another decision first."""

    def __init__(self, claim: SlotClaim):
        super().__init__(f"the {claim.queue} queue has no slot left for {claim.period}")
        self.claim = claim


def _upsert(dialect: str):
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def apply_claims(conn, claims) -> None:
    """Take each claim in the caller's transaction (a Session or Connection): one upsert per
    claim, conditional on a slot being left; SlotsTaken when one is not (the caller rolls back)."""
    if not claims:
        return
    insert = _upsert((conn.get_bind() if isinstance(conn, Session) else conn).dialect.name)
    table = CapacitySlot.__table__
    for c in claims:
        mandatory = c.limit is None
        stmt = insert(table).values(queue=c.queue, period=c.period, used=0 if mandatory else 1,
                                    mandatory=1 if mandatory else 0)
        if mandatory:
            conn.execute(stmt.on_conflict_do_update(index_elements=["queue", "period"],
                                                    set_={"mandatory": table.c.mandatory + 1}))
            continue
        taken = conn.execute(stmt.on_conflict_do_update(index_elements=["queue", "period"],
                                                        set_={"used": table.c.used + 1},
                                                        where=table.c.used < c.limit)
                             .returning(table.c.used)).first()
        if taken is None:
            raise SlotsTaken(c)


class SlotCounter:
    """Slots per (queue, period) in the capacity_slots table."""

    def __init__(self, factory):
        self.factory = factory

    def take(self, queue: str, period: str, limit: int) -> bool:
        try:
            with transaction(self.factory) as s:
                apply_claims(s, [SlotClaim(queue, period, limit)])
        except SlotsTaken:
            return False
        return True

    def count_mandatory(self, queue: str, period: str) -> None:
        with transaction(self.factory) as s:
            apply_claims(s, [SlotClaim(queue, period)])

    def used(self, queue: str, period: str) -> tuple[int, int]:
        with self.factory() as s:
            row = s.execute(select(CapacitySlot.used, CapacitySlot.mandatory)
                            .where(CapacitySlot.queue == queue, CapacitySlot.period == period)).first()
        return (row[0], row[1]) if row else (0, 0)


class QueueCapacity:
    """The engine's Capacity over a value window per queue and the shared slot counter."""

    def __init__(self, counter: SlotCounter | None, slots: int, period_days: int, share: float,
                 window: int = 2000, warmup: int = WARMUP, clock=time.time):
        self.counter = counter
        self.slots = slots
        self.period_days = max(1, period_days)
        self.share = min(max(share, 0.0), 1.0)
        self.warmup = warmup
        self.clock = clock
        self._windows: dict[str, ValueWindow] = {}
        self._size = window
        self._full: set[tuple[str, str]] = set()
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def period(self) -> str:
        return f"{self.period_days}d-{int(self.clock() // (86400 * self.period_days))}"

    def window(self, queue: str) -> ValueWindow:
        w = self._windows.get(queue)
        if w is None:
            w = self._windows.setdefault(queue, ValueWindow(self._size))
        return w

    def threshold(self, queue: str) -> float | None:
        w = self.window(queue)
        if len(w) < self.warmup:
            return None
        q = w.quantile(1.0 - self.share)
        return float("-inf") if q is None or self.share >= 1.0 else q

    def _used(self, queue: str, period: str) -> int:
        """Slots used, as a dry run reads them: at most one read a second per queue and process."""
        at = time.monotonic()
        seen = self._seen.get((queue, period))
        if seen is None or at - seen[0] >= 1.0:
            seen = self._seen[(queue, period)] = (at, self.counter.used(queue, period)[0])
        return seen[1]

    def seed(self, queue: str, values) -> int:
        """Observe `values` (oldest first) into the queue's window; how many."""
        w, n = self.window(queue), 0
        for v in values:
            w.observe(v)
            n += 1
        return n

    def deferred(self) -> "DeferredCapacity":
        """A capacity for one decision: admits as `admit` does and notes the slots to take."""
        return DeferredCapacity(self)

    def full(self, claim: SlotClaim) -> None:
        """The queue has no slot left this period (slots are never given back within one)."""
        self._full.add((claim.queue, claim.period))

    def admit(self, queue: str, value: float, *, mandatory: bool = False, claim: bool = True,
              claims: list | None = None, observe: bool = True) -> Admission:
        """`claims` given: note the slot there instead of taking it (the decision store takes it)."""
        if mandatory:
            if claim and self.counter is not None:
                if claims is None:
                    self.counter.count_mandatory(queue, self.period())
                else:
                    claims.append(SlotClaim(queue, self.period()))
            return Admission(True, None, "a policy review: always goes, counted apart from the capacity")
        threshold = self.threshold(queue)
        if observe:
            self.window(queue).observe(value)
        if threshold is None:
            return Admission(False, None, f"the value threshold forms after {self.warmup} decisions")
        if value < threshold:
            return Admission(False, round(threshold, 2), f"below the {queue} threshold {threshold:,.0f} that fills "
                             f"its capacity ({self.share:.1%} of decisions)")
        if self.slots > 0 and self.counter is not None:
            period = self.period()
            if (queue, period) in self._full:
                ok = False
            elif not claim:
                ok = self._used(queue, period) < self.slots
            elif claims is not None:
                claims.append(SlotClaim(queue, period, self.slots))
                ok = True
            else:
                ok = self.counter.take(queue, period, self.slots)
            if not ok:
                self._full.add((queue, period))
                return Admission(False, round(threshold, 2), f"the {queue} queue has used its {self.slots} slots "
                                 f"for the period")
        shown = None if threshold == float("-inf") else round(threshold, 2)
        return Admission(True, shown, f"above the {queue} threshold" + (f" {threshold:,.0f}" if shown is not None else ""))


class DeferredCapacity:
    """One decision's view of a QueueCapacity: `claims` are the slots its record must take.
    `again()` is the view for deciding again after SlotsTaken (values are not observed twice)."""

    def __init__(self, capacity: QueueCapacity, observe: bool = True):
        self.capacity = capacity
        self.claims: list[SlotClaim] = []
        self._observe = observe

    def admit(self, queue: str, value: float, *, mandatory: bool = False, claim: bool = True) -> Admission:
        return self.capacity.admit(queue, value, mandatory=mandatory, claim=claim, claims=self.claims,
                                   observe=self._observe)

    def again(self, taken: SlotsTaken) -> "DeferredCapacity":
        self.capacity.full(taken.claim)
        return DeferredCapacity(self.capacity, observe=False)


def recorded_values(factory, flow: str, limit: int) -> list[float]:
    """The values the last `limit` recorded decisions of `flow` put on an optional touch (those
    that asked for an admission, as `admit` observes them), oldest first."""
    choice = Decision.result["trace"]["choice"]
    stmt = (select(choice["human_value"].as_float(), choice["admission"]["mandatory"].as_boolean())
            .where(Decision.flow == flow, choice["admission"].isnot(None))
            .order_by(Decision.id.desc()).limit(limit))
    with factory() as s:
        rows = s.execute(stmt).all()
    return [float(v) for v, mandatory in reversed(rows) if v is not None and not mandatory]


def seed_from_records(capacity, factory, queues: dict[str, str]) -> int:
    """Fill each queue's window from its flow's recorded decisions (`queues`: flow -> queue);
    how many values. Nothing for a capacity that keeps no window."""
    if not isinstance(capacity, QueueCapacity):
        return 0
    return sum(capacity.seed(queue, recorded_values(factory, flow, capacity._size)) for flow, queue in queues.items())


def build(settings, factory):
    """The runtime's capacity: unlimited when POSTSALE_HUMAN_CAPACITY is 0 and the share is 1."""
    if settings.human_capacity <= 0 and settings.capacity_share >= 1.0:
        return Unlimited()
    return QueueCapacity(SlotCounter(factory), settings.human_capacity, settings.capacity_period_days,
                         settings.capacity_share)
