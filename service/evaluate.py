"""Debounced evaluations: when an account's signals settle, decide its flow from its features.

A due row (adapters/store/models.DueEvaluation) is claimed with a lease (FOR UPDATE SKIP
LOCKED on PostgreSQL; BEGIN IMMEDIATE on SQLite), so any number of workers share the queue and
each evaluation runs once. The decision is recorded with the feature snapshot it used, the
first and newest event behind it and the trigger; the due row is removed in the same
transaction only if no event arrived meanwhile (its generation is unchanged) — otherwise the
lease is released and the row comes due again after its new debounce.

A decision identical to the account's last one for the flow (same offers, discounts, actions,
escalations) is not recorded again: telemetry that changes nothing plans no second quote.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from adapters import metrics, telemetry
from adapters.store.db import aware, now, transaction
from adapters.store.decisions import audit
from adapters.store.models import AuditEntry, Decision, DueEvaluation
from engine.replay import plan_of
from engine.signals.events import iso

from .decide import DecideCommand, decide
from .errors import DecisionFailed, InvalidRequest

log = logging.getLogger("postsale.evaluate")
OUTCOMES = ("decided", "unchanged", "incomplete", "failed", "lost")
MAX_ATTEMPTS = 5  # an evaluation that fails this often (an unexpected error each time) is given up, audited


class LostClaim(Exception):
    """Another worker took the row over (this one's lease ran out): what this one decided is void."""


@dataclass(frozen=True)
class Due:
    account_id: str
    flow: str
    trigger: str
    generation: int
    attempts: int
    events: int
    first_signal_at: datetime
    newest_event_at: datetime
    trace_context: str | None = None  # the traceparent of the event that scheduled it


@dataclass
class Summary:
    outcomes: dict = field(default_factory=lambda: {k: 0 for k in OUTCOMES})
    decisions: list = field(default_factory=list)

    @property
    def processed(self) -> int:
        return sum(self.outcomes.values())

    def as_dict(self) -> dict:
        return {**self.outcomes, "decisions": self.decisions}


def fingerprint(result: dict) -> str:
    """What a decision would make happen (engine/replay.plan_of: status, offers and discounts,
    actions and their parameters, escalations, approval); equal fingerprints plan the same."""
    return hashlib.sha256(json.dumps(plan_of(result), sort_keys=True, default=str).encode()).hexdigest()


class Evaluator:
    def __init__(self, runtime, worker_id: str | None = None, lease_seconds: float = 60.0, clock=now):
        """`clock` says what is due (a clock ahead of time decides bursts before their debounce
        ends); features are always read as of the real time the decision is recorded."""
        self.rt = runtime
        # a token too: two replicas may share a host name and a pid (containers), never a claim
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.lease = timedelta(seconds=lease_seconds)
        self.clock = clock

    @property
    def dialect(self) -> str:
        return self.rt.db.dialect.name

    def claim(self, limit: int = 20, at: datetime | None = None) -> list[Due]:
        """Take up to `limit` rows due at `at` (the clock: may run ahead). Leases run on the real
        time, so a clock ahead never pins a row nor takes a live lease. A row whose claims keep
        ending without an answer (its worker died on it) is given up here, audited."""
        at = at or self.clock()
        real = now()
        q = (select(DueEvaluation).where(DueEvaluation.due_at <= at,
                                         or_(DueEvaluation.lease_until.is_(None), DueEvaluation.lease_until < real))
             .order_by(DueEvaluation.due_at).limit(limit))
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        out = []
        with transaction(self.rt.factory) as s:
            for row in s.scalars(q):
                if (row.attempts or 0) >= MAX_ATTEMPTS:
                    audit(s, self.worker_id, "evaluation.failed", f"{row.flow}:{row.account_id}",
                          {"trigger": row.trigger, "attempts": row.attempts,
                           "error": "the evaluation did not finish (its worker stopped or the lease ran out)"})
                    s.delete(row)
                    continue
                row.claimed_by = self.worker_id
                row.lease_until = real + self.lease
                row.attempts = (row.attempts or 0) + 1
                out.append(Due(row.account_id, row.flow, row.trigger, row.generation, row.attempts, row.events,
                               aware(row.first_signal_at), aware(row.newest_event_at), row.trace_context))
        return out

    def run_due(self, limit: int = 100, at: datetime | None = None) -> Summary:
        """Evaluate what is due (at `at`, default now); returns what happened."""
        summary = Summary()
        while summary.processed < limit:
            batch = self.claim(1, at)  # one at a time: a lease never runs out while the row waits its turn
            if not batch:
                break
            outcome, decision_id = self.evaluate(batch[0])
            summary.outcomes[outcome] += 1
            if decision_id:
                summary.decisions.append(decision_id)
        return summary

    def run_forever(self, stop, poll: float = 1.0, limit: int = 50) -> None:
        """Evaluate what comes due until `stop` (a threading.Event) is set, resting `poll`
        seconds when nothing is; an error is logged and tried again on the next pass."""
        while not stop.is_set():
            try:
                busy = self.run_due(limit=limit).processed
            except Exception:  # noqa: BLE001
                log.exception("evaluating due flows failed; again in %ss", poll)
                busy = 0
            if not busy:
                stop.wait(poll)

    def evaluate(self, due: Due) -> tuple[str, str | None]:
        with telemetry.tracer("postsale.service").start_as_current_span(
                f"evaluate {due.flow}", context=telemetry.context_of(due.trace_context),
                attributes={"postsale.flow": due.flow, "postsale.account_id": due.account_id,
                            "postsale.trigger": due.trigger, "postsale.events": due.events}) as span:
            outcome, decision_id = self._evaluate_once(due)
            span.set_attribute("postsale.outcome", outcome)
            if decision_id:
                span.set_attribute("postsale.decision_id", decision_id)
            return outcome, decision_id

    def _evaluate_once(self, due: Due) -> tuple[str, str | None]:
        try:
            return self._evaluate(due)
        except LostClaim:
            log.warning("evaluation of %s for %s outlived its lease; another worker has it", due.flow, due.account_id)
            self._count(due.flow, "lost")
            return "lost", None
        except Exception as exc:  # noqa: BLE001 - retried when the lease runs out, given up after MAX_ATTEMPTS
            self._count(due.flow, "failed")
            if due.attempts < MAX_ATTEMPTS:
                log.exception("evaluation of %s for %s failed (attempt %d of %d); it will be retried",
                              due.flow, due.account_id, due.attempts, MAX_ATTEMPTS)
                return "failed", None
            log.exception("evaluation of %s for %s failed %d times; given up", due.flow, due.account_id, due.attempts)
            try:
                self._finish(due, "evaluation.failed", {"trigger": due.trigger, "attempts": due.attempts,
                                                        "error": f"{type(exc).__name__}: {exc}"[:500]}, drop=True)
            except LostClaim:
                pass
            except Exception:  # noqa: BLE001 - the database itself is failing: the lease runs out, retried
                log.exception("could not give up the evaluation of %s for %s", due.flow, due.account_id)
            return "failed", None

    def _evaluate(self, due: Due) -> tuple[str, str | None]:
        rt = self.rt
        trigger = rt.events.triggers.get(due.trigger) if rt.events.triggers else None
        if trigger is None or rt.decider(due.flow) is None:
            why = f"trigger {due.trigger} is no longer configured" if trigger is None else f"flow {due.flow} is not loaded"
            self._finish(due, "evaluation.dropped", {"reason": why})
            self._count(due.flow, "failed")
            return "failed", None
        snap = rt.events.snapshot(due.account_id, use_cache=False)
        as_of = now()  # the clock decides what is due; features are as of the decision, which is now
        used = snap.used(as_of) if snap else {"as_of": iso(as_of), "version": 0, "last_seq": 0,
                                               "values": {"account_id": due.account_id}}
        last = rt.decisions.last(due.account_id, due.flow)

        seen = {}

        def complete(s, decision_id, at, result):
            settled = self._settle(s, due, trigger)
            if settled == "lost":
                raise LostClaim()  # rolls the decision back: the worker that holds the row decides
            if settled == "done":
                s.flush()  # the delete first: the deferred row is a new one, claimed by nobody
                self._defer(s, due, trigger, result, self.clock())

        def unchanged(result):
            seen["result"] = result
            return last is not None and fingerprint(last) == fingerprint(result)
        try:
            done = decide(rt, DecideCommand(
                facts=trigger.facts_for(used["values"]), flow=due.flow,
                context={"source": "trigger", "trigger": trigger.name, "events": due.events},
                signals={"trigger": trigger.name, "signal_at": due.first_signal_at,
                         "newest_event_at": due.newest_event_at, "features": used}),
                complete=complete, unless=unchanged)
        except InvalidRequest as exc:
            self._finish(due, "evaluation.incomplete",
                         {"trigger": trigger.name, "problems": [{"path": p.path, "message": p.message} for p in exc.raw]})
            self._count(due.flow, "incomplete")
            return "incomplete", None
        except DecisionFailed as exc:
            self._finish(due, "evaluation.failed", {"trigger": trigger.name, "code": exc.code, "message": str(exc)})
            self._count(due.flow, "failed")
            return "failed", None
        if done.skipped:
            self._finish(due, None, None, defer=seen.get("result"))
            self._count(due.flow, "unchanged")
            return "unchanged", None
        metrics.FRESHNESS.labels(due.flow).observe(max(0.0, (done.at - due.newest_event_at).total_seconds()))
        self._count(due.flow, "decided")
        return "decided", done.decision.id

    def _settle(self, s, due: Due, trigger=None, drop: bool = False) -> str:
        """In the caller's transaction: remove the due row if no event came since the claim
        ("done"); if events came, start their burst afresh — debounce and max_wait from now —
        and leave it for another pass ("kept"); if another worker holds the row now, "lost"."""
        q = select(DueEvaluation).where(DueEvaluation.account_id == due.account_id, DueEvaluation.flow == due.flow)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        row = s.scalars(q.execution_options(populate_existing=True)).first()
        if row is None or row.claimed_by != self.worker_id:
            return "lost"
        if row.generation == due.generation or drop:
            s.delete(row)
            return "done"
        at = now()
        debounce = trigger.debounce if trigger else 0.0
        max_wait = trigger.max_wait if trigger else 0.0
        row.first_signal_at, row.deadline = at, at + timedelta(seconds=max_wait)
        row.due_at = min(at + timedelta(seconds=debounce), row.deadline)
        row.events = max(1, row.events - due.events)
        row.claimed_by = row.lease_until = None
        row.attempts = 0
        return "kept"

    def _defer(self, s, due: Due, trigger, result: dict, at: datetime) -> None:
        """A decision that says "not yet" (its `reevaluate`) schedules the account's next
        evaluation for that day, in the decision's own transaction."""
        again = (result or {}).get("reevaluate")
        if not again or not again.get("in_days") or trigger is None:
            return
        when = at + timedelta(days=int(again["in_days"]))
        s.add(DueEvaluation(account_id=due.account_id, flow=due.flow, trigger=trigger.name, first_signal_at=when,
                            newest_event_at=due.newest_event_at, due_at=when, deadline=when, events=0,
                            generation=0, attempts=0, claimed_by=None, lease_until=None, created_at=at))

    def _finish(self, due: Due, kind: str | None, detail: dict | None, drop: bool = False,
                defer: dict | None = None) -> None:
        """Settle the row without a decision (audited as `kind`); LostClaim when another worker
        has it. `drop`: remove it even if events came meanwhile (given up: the next event
        schedules afresh). `defer`: an unchanged decision that still says "not yet"."""
        trigger = self.rt.events.triggers.get(due.trigger) if self.rt.events.triggers else None
        with transaction(self.rt.factory) as s:
            settled = self._settle(s, due, trigger, drop)
            if settled == "lost":
                raise LostClaim()
            if settled == "done" and defer is not None:
                s.flush()
                self._defer(s, due, trigger, defer, self.clock())
            if kind is not None and not self._repeats(s, due, kind, detail):
                audit(s, self.worker_id, kind, f"{due.flow}:{due.account_id}", detail)

    @staticmethod
    def _repeats(s, due: Due, kind: str, detail) -> bool:
        """Still incomplete for the same reason (e.g. no renewal date yet), with no decision since
        the entry that said so: not written again, so a chatty account does not fill the log.
        Failures are always written."""
        if kind != "evaluation.incomplete":
            return False
        last = s.scalars(select(AuditEntry).where(AuditEntry.subject == f"{due.flow}:{due.account_id}")
                         .order_by(AuditEntry.id.desc()).limit(1)).first()
        if last is None or last.kind != kind or last.detail != detail:
            return False
        decided = s.scalar(select(Decision.created_at).where(Decision.account_id == due.account_id,
                                                              Decision.flow == due.flow)
                           .order_by(Decision.id.desc()).limit(1))
        return decided is None or aware(decided) <= aware(last.created_at)

    @staticmethod
    def _count(flow: str, outcome: str) -> None:
        metrics.EVALUATIONS.labels(flow, outcome).inc()


__all__ = ["Evaluator", "Due", "Summary", "fingerprint", "iso"]
