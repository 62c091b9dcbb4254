"""The event store and the feature state it feeds.

One transaction per batch: the new events are appended (an event id already stored is a
duplicate and changes nothing), each touched account's feature state is locked, folded and
written, and the flows its triggers name are scheduled (debounced) — so an event is either
stored, folded and scheduled, or not there at all. Accounts are locked in sorted order, so two
batches never deadlock; the Redis cache is written after the commit and only moves forward
(by state version).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from engine.signals.events import Event, iso
from engine.signals.features import canonical, empty_state, features, fold, rebuild

from adapters import telemetry

from .cache import RedisGuard
from .db import aware, now, transaction
from .models import DueEvaluation
from .models import Event as EventRow
from .models import FeatureState

CACHE_TTL_SECONDS = 7 * 24 * 3600

# KEYS[1] cache key; ARGV[1] version; ARGV[2] JSON; ARGV[3] ttl. Writes only a newer version.
_CACHE_SET = """
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


@dataclass
class Snapshot:
    """An account's folded state as of its last stored event."""
    account_id: str
    state: dict
    version: int
    last_seq: int
    newest_event_at: datetime | None

    def features(self, as_of: datetime) -> dict:
        return features(self.state, self.account_id, as_of)

    def used(self, as_of: datetime) -> dict:
        """What a decision records of the features it read: as of when, from which state."""
        return {"as_of": iso(as_of), "version": self.version, "last_seq": self.last_seq,
                "values": self.features(as_of)}

    def as_json(self) -> dict:
        return {"account_id": self.account_id, "version": self.version, "last_seq": self.last_seq,
                "newest_event_at": iso(self.newest_event_at) if self.newest_event_at else None, "state": self.state}


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    scheduled: list[dict] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"accepted": len(self.accepted), "duplicates": self.duplicates, "scheduled": self.scheduled}


class EventStore:
    def __init__(self, factory, triggers=None, redis=None, clock=now):
        self.factory = factory
        self.triggers = triggers
        self.redis = redis
        self.guard = RedisGuard(redis, "features")
        self.clock = clock
        self._cache_set = redis.register_script(_CACHE_SET) if redis is not None else None
        self._namespace = None

    @property
    def dialect(self) -> str:
        return self.factory.kw["bind"].dialect.name

    # ---- writes ----
    def ingest(self, events: list[Event]) -> IngestResult:
        with telemetry.tracer("postsale.events").start_as_current_span(
                "events.ingest", attributes={"postsale.events": len(events)}) as span:
            result = self._ingest(events)
            span.set_attribute("postsale.accepted", len(result.accepted))
            span.set_attribute("postsale.scheduled", len(result.scheduled))
            return result

    def _ingest(self, events: list[Event]) -> IngestResult:
        result = IngestResult()
        seen, unique = set(), []
        for e in events:
            if e.id in seen:
                result.duplicates.append(e.id)
            else:
                seen.add(e.id)
                unique.append(e)
        if not unique:
            return result
        received = self.clock()
        with transaction(self.factory) as s:
            inserted = self._append(s, unique, received)
            fresh = [e for e in unique if e.id in inserted]
            result.duplicates += [e.id for e in unique if e.id not in inserted]
            by_account: dict[str, list[Event]] = {}
            for e in fresh:
                by_account.setdefault(e.account_id, []).append(e)
            accounts = sorted(by_account)
            states = self._lock_states(s, accounts)
            dues = self._lock_dues(s, accounts)
            for account in accounts:
                batch = sorted(by_account[account], key=lambda e: (e.occurred_at, e.id))
                snap = self._fold(states[account], batch, max(inserted[e.id] for e in batch))
                result.snapshots.append(snap)
                result.scheduled += self._schedule(s, dues, account, batch, received)
            result.accepted = [e.id for e in fresh]
        for snap in result.snapshots:
            self._cache(snap)
        return result

    def _append(self, s, events: list[Event], received: datetime) -> dict[str, int]:
        # in event id order: two batches holding the same ids wait for each other, never deadlock
        rows = [{"event_id": e.id, "account_id": e.account_id, "type": e.type, "occurred_at": e.occurred_at,
                 "received_at": received, "source": e.source, "data": e.data}
                for e in sorted(events, key=lambda e: e.id)]
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = (insert(EventRow).values(rows).on_conflict_do_nothing(index_elements=["event_id"])
                .returning(EventRow.event_id, EventRow.seq))
        return {event_id: seq for event_id, seq in s.execute(stmt)}

    def _lock_states(self, s, accounts: list[str]) -> dict[str, FeatureState]:
        """Every account's state row, created when missing, locked in account order (so two
        batches touching the same accounts wait for each other instead of deadlocking)."""
        if not accounts:
            return {}
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        at = self.clock()
        s.execute(insert(FeatureState).values([{"account_id": a, "state": empty_state(), "version": 0, "last_seq": 0,
                                                "newest_event_at": None, "updated_at": at} for a in accounts])
                  .on_conflict_do_nothing(index_elements=["account_id"]))
        q = select(FeatureState).where(FeatureState.account_id.in_(accounts)).order_by(FeatureState.account_id)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        return {r.account_id: r for r in s.scalars(q.execution_options(populate_existing=True))}

    def _lock_dues(self, s, accounts: list[str]) -> dict[tuple, DueEvaluation]:
        if self.triggers is None or not accounts:
            return {}
        q = (select(DueEvaluation).where(DueEvaluation.account_id.in_(accounts))
             .order_by(DueEvaluation.account_id, DueEvaluation.flow))
        if self.dialect == "postgresql":
            q = q.with_for_update()
        return {(r.account_id, r.flow): r for r in s.scalars(q.execution_options(populate_existing=True))}

    def _fold(self, row: FeatureState, batch: list[Event], last_seq: int) -> Snapshot:
        account = row.account_id
        state = json.loads(json.dumps(row.state))
        for e in batch:
            fold(state, e)
        state = canonical(state)
        newest = max(e.occurred_at for e in batch)
        row.state = state
        row.version = (row.version or 0) + len(batch)
        row.last_seq = max(row.last_seq or 0, last_seq)
        row.newest_event_at = max(aware(row.newest_event_at), newest) if row.newest_event_at else newest
        row.updated_at = self.clock()
        return Snapshot(account, state, row.version, row.last_seq, aware(row.newest_event_at))

    def _schedule(self, s, dues: dict, account: str, batch: list[Event], received: datetime) -> list[dict]:
        """Debounce: each event pushes the evaluation back by the trigger's debounce, never past
        the deadline set by the first event of the burst (max_wait). The burst's signal time is
        when its first event arrived here: a backfill of old events is not an old signal."""
        if self.triggers is None:
            return []
        wanted: dict[str, tuple] = {}
        for e in batch:
            for t in self.triggers.for_event(e.type):
                if t.flow in wanted:
                    continue
                events = [x for x in batch if x.type in t.on]
                wanted[t.flow] = (t, events)
        out = []
        for flow, (t, events) in sorted(wanted.items()):
            newest = max(e.occurred_at for e in events)
            row = dues.get((account, flow))
            if row is None:
                deadline = received + timedelta(seconds=t.max_wait)
                row = DueEvaluation(account_id=account, flow=flow, trigger=t.name, first_signal_at=received,
                                    newest_event_at=newest, due_at=min(received + timedelta(seconds=t.debounce), deadline),
                                    deadline=deadline, events=len(events), generation=1, attempts=0,
                                    created_at=received, trace_context=telemetry.traceparent())
                s.add(row)
                dues[(account, flow)] = row
            else:
                row.newest_event_at = max(aware(row.newest_event_at), newest)
                row.due_at = min(received + timedelta(seconds=t.debounce), aware(row.deadline))
                row.events += len(events)
                row.generation += 1
            out.append({"account_id": account, "flow": flow, "trigger": t.name, "due_at": iso(aware(row.due_at))})
        return out

    def _cache(self, snap: Snapshot) -> None:
        if self._cache_set is None:
            return
        self.guard.call("cache", self._cache_set, keys=[self.cache_key(snap.account_id)],
                        args=[snap.version, json.dumps(snap.as_json(), separators=(",", ":")), CACHE_TTL_SECONDS])

    def cache_key(self, account: str) -> str:
        if self._namespace is None:
            self._namespace = namespace(self.factory)
        return f"postsale:features:{self._namespace}:{account}"

    # ---- reads ----
    def snapshot(self, account: str, use_cache: bool = True) -> Snapshot | None:
        if use_cache and self.redis is not None:
            doc = self.guard.call("hget", self.redis.hget, self.cache_key(account), "doc")
            if doc:
                d = json.loads(doc)
                at = datetime.fromisoformat(d["newest_event_at"]) if d["newest_event_at"] else None
                return Snapshot(account, d["state"], d["version"], d["last_seq"], at)
        with self.factory() as s:
            row = s.get(FeatureState, account)
            if row is None:
                return None
            snap = Snapshot(account, row.state, row.version, row.last_seq, aware(row.newest_event_at))
        self._cache(snap)
        return snap

    def events(self, account: str, limit: int = 100, after: int | None = None) -> list[dict]:
        with self.factory() as s:
            q = select(EventRow).where(EventRow.account_id == account)
            if after is not None:
                q = q.where(EventRow.seq > after)
            rows = s.scalars(q.order_by(EventRow.seq).limit(limit)).all()
            return [event_json(r) for r in rows]

    def replay(self, account: str, until: datetime | None = None) -> dict:
        """The account's state rebuilt from the event store alone (only events that occurred by
        `until`, when given: the state as it was then, late arrivals included)."""
        with self.factory() as s:
            return _replayed(account, _history(s, account, until)).state

    def snapshot_at(self, account: str, at: datetime) -> Snapshot | None:
        """The account's state as of `at`: the stored one when nothing newer happened since,
        otherwise replayed from the events that occurred by then (read once, so the state, its
        version and last seq agree)."""
        snap = self.snapshot(account)
        if snap is None or snap.newest_event_at is None or snap.newest_event_at <= at:
            return snap
        with self.factory() as s:
            rows = _history(s, account, at)
        return _replayed(account, rows) if rows else None

    def rebuild(self, account: str) -> dict:
        """Replay the account's events and replace its stored state with the result; reports
        whether the stored state already matched."""
        with transaction(self.factory) as s:
            row = self._lock_states(s, [account])[account]
            fresh = _replayed(account, _history(s, account))
            identical = canonical(row.state) == fresh.state and row.version == fresh.version
            if not identical:
                row.state, row.version, row.last_seq = fresh.state, fresh.version, fresh.last_seq
                row.newest_event_at = fresh.newest_event_at
                row.updated_at = self.clock()
            snap = Snapshot(account, fresh.state, row.version, row.last_seq, aware(row.newest_event_at))
        if self.redis is not None:  # always: the cache may be ahead of a restored database
            self.guard.call("delete", self.redis.delete, self.cache_key(account))
        self._cache(snap)
        return {"account_id": account, "events": fresh.version, "identical": identical, "version": snap.version}

    def accounts(self) -> list[str]:
        with self.factory() as s:
            return list(s.scalars(select(FeatureState.account_id).order_by(FeatureState.account_id)))


def namespace(factory) -> str:
    """Which database a cached state belongs to: its own random id (migration 0008), the same
    for every process however it spells the URL; two databases sharing one Redis never read
    each other's states. After restoring a backup, `postsale features rebuild --all` rewrites
    the cache."""
    from .models import Instance
    with factory() as s:
        return s.scalar(select(Instance.id).limit(1))[:12]


def _history(s, account: str, until: datetime | None = None) -> list:
    """The account's stored events in the order they were stored (those that occurred by `until`)."""
    q = select(EventRow).where(EventRow.account_id == account)
    if until is not None:
        q = q.where(EventRow.occurred_at <= until)
    return s.scalars(q.order_by(EventRow.seq)).all()


def _replayed(account: str, rows) -> Snapshot:
    """The state those events fold into, with its version, last seq and newest event time."""
    return Snapshot(account, rebuild(row_event(r) for r in rows), len(rows), max((r.seq for r in rows), default=0),
                    max((aware(r.occurred_at) for r in rows), default=None))


def row_event(r: EventRow) -> Event:
    return Event(id=r.event_id, type=r.type, account_id=r.account_id, occurred_at=aware(r.occurred_at), data=r.data,
                 source=r.source)


def event_json(r: EventRow) -> dict:
    return {"seq": r.seq, **row_event(r).as_json(), "received_at": iso(aware(r.received_at))}
