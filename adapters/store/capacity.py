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

A dry run reads the threshold and the slots left without taking one.
"""
from __future__ import annotations

import bisect
import threading
import time
from collections import deque

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.choose import Admission, Unlimited

from .db import transaction
from .models import CapacitySlot

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


class SlotCounter:
    """Slots per (queue, period) in the capacity_slots table."""

    def __init__(self, factory):
        self.factory = factory

    def _row(self, s, queue: str, period: str) -> None:
        if s.get(CapacitySlot, (queue, period)) is None:
            try:
                with s.begin_nested():
                    s.execute(insert(CapacitySlot).values(queue=queue, period=period, used=0, mandatory=0))
            except IntegrityError:
                pass  # another worker created it first

    def take(self, queue: str, period: str, limit: int) -> bool:
        with transaction(self.factory) as s:
            self._row(s, queue, period)
            done = s.execute(update(CapacitySlot)
                             .where(CapacitySlot.queue == queue, CapacitySlot.period == period,
                                    CapacitySlot.used < limit)
                             .values(used=CapacitySlot.used + 1))
            return done.rowcount == 1

    def count_mandatory(self, queue: str, period: str) -> None:
        with transaction(self.factory) as s:
            self._row(s, queue, period)
            s.execute(update(CapacitySlot).where(CapacitySlot.queue == queue, CapacitySlot.period == period)
                      .values(mandatory=CapacitySlot.mandatory + 1))

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

    def admit(self, queue: str, value: float, *, mandatory: bool = False, claim: bool = True) -> Admission:
        if mandatory:
            if claim and self.counter is not None:
                self.counter.count_mandatory(queue, self.period())
            return Admission(True, None, "a policy review: always goes, counted apart from the capacity")
        threshold = self.threshold(queue)
        self.window(queue).observe(value)
        if threshold is None:
            return Admission(False, None, f"the value threshold forms after {self.warmup} decisions")
        if value < threshold:
            return Admission(False, round(threshold, 2), f"below the {queue} threshold {threshold:,.0f} that fills "
                             f"its capacity ({self.share:.1%} of decisions)")
        if self.slots > 0 and self.counter is not None:
            period = self.period()
            if claim:
                ok = self.counter.take(queue, period, self.slots)
            else:
                ok = self.counter.used(queue, period)[0] < self.slots
            if not ok:
                return Admission(False, round(threshold, 2), f"the {queue} queue has used its {self.slots} slots "
                                 f"for the period")
        shown = None if threshold == float("-inf") else round(threshold, 2)
        return Admission(True, shown, f"above the {queue} threshold" + (f" {threshold:,.0f}" if shown is not None else ""))


def build(settings, factory):
    """The runtime's capacity: unlimited when POSTSALE_HUMAN_CAPACITY is 0 and the share is 1."""
    if settings.human_capacity <= 0 and settings.capacity_share >= 1.0:
        return Unlimited()
    return QueueCapacity(SlotCounter(factory), settings.human_capacity, settings.capacity_period_days,
                         settings.capacity_share)
