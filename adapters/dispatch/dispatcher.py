"""The dispatcher: makes the planned actions of recorded decisions happen, exactly once.

One row at a time (docs/dispatch.md has the whole story):

    claim (ready|retry due, or running with an expired lease; lowest unfinished step only)
      ├─ circuit open for the tool ............ deferred  (back to ready/retry, no attempt spent)
      ├─ no rate-limit token soon enough ...... deferred
      ├─ contact policy full (outreach) ....... suppressed  + action.suppressed
      └─ start: attempts+1, lease extended ... action.started
           call the tool with the row's idempotency key
             ├─ ok ............................ done        + action.done (result without data)
             ├─ retryable, budget left ........ retry       + action.retry (next_attempt_at: backoff, Retry-After)
             └─ not retryable / budget spent .. dead        + action.dead, then the saga:
                  later steps  -> cancelled (action.cancelled), earlier done steps -> compensated
                  in reverse order (action.compensated), saga.aborted / saga.compensated

Every write after the claim is fenced on (id, claimed_by = this worker, state running): a
worker that lost its lease (it stalled, another took the row over) changes nothing. Every
call carries the row's idempotency key, so a row run twice (a worker killed mid-call, a lease
taken over) makes the tool act once and answer the second call from its record.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import aliased

from adapters import telemetry
from adapters.store.db import now, transaction
from adapters.store.models import Decision, DecisionEvent, Outbox
from adapters.tools.base import ToolError, ToolResult, ToolTimeout, compensation_key

from .backoff import backoff_seconds
from .breaker import Breakers
from .claims import DUE_STATES, Claimed, claim
from .contact import NO_POLICY, ContactPolicy, make_contact_limiter
from .ratelimit import dispatch_guard, make_rate_limiter

log = logging.getLogger("postsale.dispatch")

ERROR_TEXT_LIMIT = 500
RESULT_DATA_KEYS = ("id", "status", "kind")  # what a result keeps of the tool's answer (no personal data)
CONTACT_KEYS = ("contact_at", "contact_channel", "contact_account")


def worker_name() -> str:
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(3)}"


def result_json(result: ToolResult) -> dict:
    """What the outbox keeps of a tool's answer: the external reference and the outcome, and of
    the response body only id / status / kind (a body may echo personal data)."""
    d = result.to_json()
    data = d.pop("data") or {}
    d["data"] = {k: data[k] for k in RESULT_DATA_KEYS
                 if k in data and isinstance(data[k], (str, int, float, bool))}
    return d


def error_kind(err: BaseException) -> str:
    return err.outcome if isinstance(err, ToolError) else "unexpected_error"


def error_text(err: BaseException) -> str:
    text = f"{error_kind(err)}: {err}"
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 3] + "..."


def enrich(params: dict, decision_result: dict | None) -> dict:
    """An action that names an offer (params.offer) gets the offer's terms from the decision
    record, so the quote carries the discount. What the row's params already say wins (an
    approver's edit is written there)."""
    name = params.get("offer")
    if not name or not decision_result:
        return params
    for o in decision_result.get("offers") or []:
        if o.get("offer") == name:
            terms = {k: o.get(k) for k in ("offer", "kind", "discount", "term_months") if k in o}
            return {**terms, **params}
    return params


@dataclass(frozen=True)
class StepResult:
    id: int
    decision_id: str
    step: int
    action: str
    state: str  # done | retry | dead | suppressed | deferred | lost
    attempts: int
    error: str | None = None
    wait: float | None = None


@dataclass
class Summary:
    outcomes: Counter = field(default_factory=Counter)
    compensations: Counter = field(default_factory=Counter)

    @property
    def processed(self) -> int:
        return sum(self.outcomes.values())

    def add(self, r: StepResult) -> None:
        self.outcomes[r.state] += 1

    def as_dict(self) -> dict:
        return {"processed": self.processed, "outcomes": dict(self.outcomes),
                "compensations": dict(self.compensations)}


class Dispatcher:
    """Runs outbox rows through the tool adapters. One per process; thread-safe.

    factory          sessionmaker of the service database
    registry         adapters.tools.registry.Registry
    redis            a redis.Redis: shared rate limits and contact counters (None: in process / DB)
    contact_policy   adapters.dispatch.contact.ContactPolicy (None: no limits)
    lease_seconds    how long a claim holds beyond the tool's timeout before others may take it over
    breaker_threshold, breaker_cooldown   consecutive failures that open a tool's circuit; seconds open
    max_rate_wait    wait this long at most for a rate-limit token in place; longer: defer the row
    """

    def __init__(self, factory, registry, *, redis=None, contact_policy: ContactPolicy | None = None,
                 lease_seconds: float = 30.0, breaker_threshold: int = 5, breaker_cooldown: float = 30.0,
                 max_rate_wait: float = 2.0, worker_id: str | None = None, redis_prefix: str = "postsale",
                 actor: str = "dispatcher", clock=time.monotonic):
        self.factory = factory
        self.dialect = factory.kw["bind"].dialect.name
        self.registry = registry
        self.redis = redis
        self.policy = contact_policy or NO_POLICY
        self.lease_seconds = lease_seconds
        self.breakers = Breakers(breaker_threshold, breaker_cooldown, clock)
        self.redis_outage = dispatch_guard(redis, f"dispatcher {redis_prefix}")  # one view of Redis's health for both
        self.limiter = make_rate_limiter(redis, redis_prefix, self.redis_outage)
        self.contacts = make_contact_limiter(factory, redis, redis_prefix, self.redis_outage)
        self.max_rate_wait = max_rate_wait
        self.worker_id = (worker_id or worker_name())[:128]
        self.actor = actor
        self.clock = clock
        self._decisions: dict[str, tuple[dict, str | None, str | None]] = {}
        self._lock = threading.Lock()
        self._prepaid = threading.local()  # rate-limit tokens run_decision took before claiming
        self._held = threading.local()  # (sink, calls) of the tool call this thread is finishing

    # ------------------------------------------------------------------ claiming
    def _excluded_actions(self) -> list[str]:
        open_tools = self.breakers.open_tools()
        if not open_tools:
            return []
        return [a for a, t in self.registry.catalog.routes.items() if t in open_tools]

    def _lease(self, action_type: str) -> float:
        try:
            timeout = self.registry.adapter_for(action_type).timeout
        except ToolError:
            timeout = 0.0
        return self.lease_seconds + timeout

    def claim(self, limit: int = 1, decision_id: str | None = None) -> list[Claimed]:
        """Take up to `limit` due rows (see claims.py); tools with an open circuit are left alone."""
        # until the call starts (then the lease is extended by the tool's timeout): the checks and
        # at most max_rate_wait of waiting for a rate-limit token
        return claim(self.factory, self.dialect, self.worker_id, self.lease_seconds + self.max_rate_wait, limit,
                     decision_id=decision_id, exclude_actions=self._excluded_actions())

    # ------------------------------------------------------------------ one row
    def process(self, c: Claimed, deadline: float | None = None) -> StepResult:
        """Run one claimed row to its next state, in a span of the decision's trace."""
        parent = telemetry.context_of(self._recorded(c.decision_id)[2]) if telemetry.enabled() else None
        with telemetry.tracer("postsale.dispatch").start_as_current_span(
                f"outbox.dispatch {c.action_type}", context=parent, kind=telemetry.SpanKind.CONSUMER,
                attributes={"postsale.decision_id": c.decision_id, "postsale.outbox.id": c.id,
                            "postsale.outbox.step": c.step, "postsale.action": c.action_type}) as span:
            r = self._process(c, deadline)
            span.set_attribute("postsale.outbox.state", r.state)
            span.set_attribute("postsale.outbox.attempts", r.attempts)
            if r.state in ("retry", "dead"):
                span.set_status(telemetry.Status(telemetry.StatusCode.ERROR, r.error or r.state))
            return r

    def _process(self, c: Claimed, deadline: float | None) -> StepResult:
        try:
            adapter = self.registry.adapter_for(c.action_type)
        except ToolError as err:
            return self._dead(c, c.attempts, err, error_text(err))
        policy = adapter.retry
        if c.reclaimed:
            self._event_only(c, "action.reclaimed", {"attempt": c.attempts})
            if c.attempts >= policy.max_attempts:
                return self._dead(c, c.attempts, None,
                                  f"retry budget spent: {c.attempts} attempts, the last one lost with its "
                                  "worker (a crash or a stall past the lease)", kind="worker_lost")
        breaker = self.breakers[adapter.tool]
        permit = breaker.allow()
        if not permit.allowed:
            return self._defer(c, permit.wait, "circuit_open")
        wait = self._rate_wait(adapter, deadline)
        if wait:
            breaker.release(permit)
            return self._defer(c, wait, "rate_limited")
        decision_result, decision_account = self._decision(c.decision_id)
        params = enrich(c.params, decision_result)
        marker = None
        if self.policy.applies_to(c.action_type):
            account = str(params.get("account") or decision_account or "")
            channel = params.get("channel")
            limits = self.policy.limits_for(channel)
            verdict = self.contacts.reserve(row_id=c.id, worker=self.worker_id, key=c.idempotency_key,
                                            account=account, channel=channel, limits=limits)
            if not verdict.allowed:
                breaker.release(permit)
                return self._suppress(c, verdict, channel)
            marker = verdict.marker
        attempt = self._start(c, adapter)
        if attempt is None:
            breaker.release(permit)
            return StepResult(c.id, c.decision_id, c.step, c.action_type, "lost", c.attempts)
        hold = getattr(adapter.audit, "held", None)
        with hold() if hold is not None else nullcontext() as held:
            self._held.audit = (adapter.audit, held) if held is not None else None
            try:
                try:
                    result = adapter.perform(c.action_type, params, c.idempotency_key)
                except Exception as err:  # noqa: BLE001 - every failure is recorded on the row
                    breaker.outcome(permit, err)
                    if not isinstance(err, ToolError):
                        log.exception("dispatch of outbox row %s (%s) failed unexpectedly", c.id, c.action_type)
                    return self._failed(c, attempt, err, policy, marker)
                breaker.outcome(permit, None)
                return self._done(c, attempt, result, marker)
            finally:
                self._held.audit = None

    def _rate_wait(self, adapter, deadline) -> float:
        """0 once a token is taken; else the seconds to defer by."""
        prepaid = getattr(self._prepaid, "tools", None)
        if prepaid and adapter.tool in prepaid:
            prepaid.discard(adapter.tool)
            return 0.0
        while True:
            wait = self.limiter.acquire(adapter.tool, adapter.rate_limit)
            if wait <= 0:
                return 0.0
            room = self.max_rate_wait
            if deadline is not None:
                room = min(room, deadline - self.clock())
            if wait > room:
                return wait
            time.sleep(wait)

    def _decision(self, decision_id: str) -> tuple[dict, str | None]:
        return self._recorded(decision_id)[:2]

    def _recorded(self, decision_id: str) -> tuple[dict, str | None, str | None]:
        """(result, account, traceparent) of a decision."""
        with self._lock:
            hit = self._decisions.get(decision_id)
        if hit is not None:
            return hit
        with self.factory() as s:
            d = s.get(Decision, decision_id)
            value = (d.result, d.account_id, (d.context or {}).get("traceparent")) if d is not None else ({}, None, None)
        self.remember(decision_id, *value)  # decisions are immutable
        return value

    # ------------------------------------------------------------------ transitions
    @contextmanager
    def _after_call(self):
        """The transaction of a step's state after its tool call; it also writes the call's
        audit records the sink held back, which count as written once it commits."""
        with transaction(self.factory) as s:
            yield s
            sink, calls = getattr(self._held, "audit", None) or (None, None)
            written = list(calls or ())
            if written:
                sink.write(s, written)
        if written:
            del calls[:len(written)]

    def _event(self, s, decision_id: str, type_: str, payload: dict) -> None:
        s.add(DecisionEvent(decision_id=decision_id, type=type_, created_at=now(), actor=self.actor,
                            payload=payload))

    def _event_only(self, c: Claimed, type_: str, extra: dict) -> None:
        with transaction(self.factory) as s:
            self._event(s, c.decision_id, type_, {"step": c.step, "action": c.action_type, **extra})

    def _fenced(self, s, c: Claimed) -> Outbox | None:
        q = select(Outbox).where(Outbox.id == c.id)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        row = s.scalars(q).first()
        if row is None or row.state != "running" or row.claimed_by != self.worker_id:
            log.warning("outbox row %s was taken over by %s (state %s); leaving it", c.id,
                        row.claimed_by if row else None, row.state if row else None)
            return None
        return row

    def _start(self, c: Claimed, adapter) -> int | None:
        at = now()
        with transaction(self.factory) as s:
            row = self._fenced(s, c)
            if row is None:
                return None
            row.attempts = (row.attempts or 0) + 1
            row.lease_until = at + timedelta(seconds=self.lease_seconds + adapter.timeout)
            row.updated_at = at
            self._event(s, c.decision_id, "action.started",
                        {"step": c.step, "action": c.action_type, "tool": adapter.tool, "attempt": row.attempts})
            return row.attempts

    def _done(self, c: Claimed, attempt: int, result: ToolResult, marker: dict | None) -> StepResult:
        at = now()
        with self._after_call() as s:
            row = self._fenced(s, c)
            if row is None:
                return StepResult(c.id, c.decision_id, c.step, c.action_type, "lost", attempt)
            row.state, row.result = "done", {**result_json(result), **(marker or {})}
            row.next_attempt_at = row.lease_until = None
            row.last_error, row.updated_at = None, at
            self._event(s, c.decision_id, "action.done",
                        {"step": c.step, "action": c.action_type, "tool": result.tool, "attempt": attempt,
                         "reference": result.reference, "replayed": result.replayed})
        return StepResult(c.id, c.decision_id, c.step, c.action_type, "done", attempt)

    def _failed(self, c: Claimed, attempt: int, err: BaseException, policy, marker) -> StepResult:
        retryable = err.retryable if isinstance(err, ToolError) else True
        if not retryable:
            return self._dead(c, attempt, err, error_text(err), marker=marker)
        if attempt >= policy.max_attempts:
            return self._dead(c, attempt, err, f"retry budget spent: {attempt} of {policy.max_attempts} attempts; "
                                               f"last: {error_text(err)}", marker=marker)
        retry_after = getattr(err, "retry_after", None)
        wait = backoff_seconds(policy, attempt, retry_after)
        at = now()
        with self._after_call() as s:
            row = self._fenced(s, c)
            if row is None:
                return StepResult(c.id, c.decision_id, c.step, c.action_type, "lost", attempt)
            row.state, row.next_attempt_at = "retry", at + timedelta(seconds=wait)
            row.lease_until, row.last_error, row.updated_at = None, error_text(err), at
            self._event(s, c.decision_id, "action.retry",
                        {"step": c.step, "action": c.action_type, "attempt": attempt, "error": error_kind(err),
                         "status": getattr(err, "status", None), "retry_after": retry_after,
                         "wait_seconds": round(wait, 3)})
        return StepResult(c.id, c.decision_id, c.step, c.action_type, "retry", attempt, error_kind(err), wait)

    def _defer(self, c: Claimed, wait: float, reason: str) -> StepResult:
        at = now()
        with transaction(self.factory) as s:
            row = self._fenced(s, c)
            if row is None:
                return StepResult(c.id, c.decision_id, c.step, c.action_type, "lost", c.attempts)
            row.state = "retry" if (row.attempts or 0) > 0 else "ready"
            row.next_attempt_at = at + timedelta(seconds=max(wait, 0.0))
            row.lease_until, row.claimed_by, row.updated_at = None, None, at
            self._event(s, c.decision_id, "action.deferred",
                        {"step": c.step, "action": c.action_type, "reason": reason, "wait_seconds": round(wait, 3)})
        return StepResult(c.id, c.decision_id, c.step, c.action_type, "deferred", c.attempts, reason, wait)

    def _suppress(self, c: Claimed, verdict, channel) -> StepResult:
        at = now()
        reason = verdict.reason(channel)
        with transaction(self.factory) as s:
            row = self._fenced(s, c)
            if row is None:
                return StepResult(c.id, c.decision_id, c.step, c.action_type, "lost", c.attempts)
            row.state, row.last_error = "suppressed", reason
            row.next_attempt_at = row.lease_until = None
            row.updated_at = at
            self._event(s, c.decision_id, "action.suppressed",
                        {"step": c.step, "action": c.action_type, "reason": "contact_policy", "channel": channel,
                         "scope": verdict.scope, "limit": verdict.limit.limit, "window": verdict.limit.window,
                         "detail": reason})
        return StepResult(c.id, c.decision_id, c.step, c.action_type, "suppressed", c.attempts, "contact_policy")

    def _dead(self, c: Claimed, attempt: int, err: BaseException | None, reason: str, *, kind: str | None = None,
              marker: dict | None = None) -> StepResult:
        at = now()
        kind = kind or (error_kind(err) if err is not None else "unknown")
        maybe_happened = isinstance(err, ToolTimeout) or kind == "worker_lost"
        with self._after_call() as s:
            row = self._fenced(s, c)
            if row is None:
                return StepResult(c.id, c.decision_id, c.step, c.action_type, "lost", attempt)
            row.state, row.last_error = "dead", reason
            row.next_attempt_at = row.lease_until = None
            row.updated_at = at
            # a contact slot stays taken when the outreach may have happened (timeout, lost worker)
            row.result = (marker or row.result) if maybe_happened else None
            self._event(s, c.decision_id, "action.dead",
                        {"step": c.step, "action": c.action_type, "attempt": attempt, "error": kind,
                         "status": getattr(err, "status", None)})
            self._abort_saga(s, c, kind, at)
        if not maybe_happened and self.policy.applies_to(c.action_type):
            self._release_contact(c)
        log.warning("outbox row %s (%s, decision %s step %s) is dead: %s", c.id, c.action_type, c.decision_id,
                    c.step, reason)
        return StepResult(c.id, c.decision_id, c.step, c.action_type, "dead", attempt, kind)

    def _release_contact(self, c: Claimed) -> None:
        _, account = self._decision(c.decision_id)
        params = c.params
        channel = params.get("channel")
        self.contacts.release(key=c.idempotency_key, account=str(params.get("account") or account or ""),
                              channel=channel, limits=self.policy.limits_for(channel))

    # ------------------------------------------------------------------ sagas
    def _abort_saga(self, s, c: Claimed, kind: str, at) -> None:
        """In the dead row's transaction: cancel the later steps, mark the earlier done steps that
        declare a compensating action for undoing (next_attempt_at set on a done row), record."""
        rows = s.scalars(select(Outbox).where(Outbox.decision_id == c.decision_id, Outbox.id != c.id)
                         .order_by(Outbox.step)).all()
        if not rows:
            return
        cancelled, undo, kept = [], [], []
        for r in rows:
            if r.step > c.step and r.state in DUE_STATES:
                r.state = "cancelled"
                r.last_error = f"saga aborted: step {c.step} ({c.action_type}) failed for good"
                r.next_attempt_at = r.lease_until = None
                r.updated_at = at
                cancelled.append(r.step)
                self._event(s, c.decision_id, "action.cancelled",
                            {"step": r.step, "action": r.action_type, "reason": "saga_aborted",
                             "failed_step": c.step})
        for r in sorted(rows, key=lambda r: -r.step):
            if r.step < c.step and r.state == "done":
                if self.registry.compensation_for(r.action_type):
                    r.next_attempt_at, r.lease_until, r.updated_at = at, None, at
                    undo.append(r.step)
                else:
                    kept.append(r.step)
                    self._event(s, c.decision_id, "action.kept",
                                {"step": r.step, "action": r.action_type, "reason": "no_compensating_action"})
        self._event(s, c.decision_id, "saga.aborted",
                    {"failed_step": c.step, "action": c.action_type, "error": kind, "compensate": undo,
                     "kept": kept, "cancelled": cancelled})

    def _claim_compensation(self, decision_id: str | None):
        at = now()
        later = aliased(Outbox, name="later")
        pending = and_(Outbox.state == "done", Outbox.next_attempt_at.is_not(None))
        q = select(Outbox.id).where(
            pending, Outbox.next_attempt_at <= at, or_(Outbox.lease_until.is_(None), Outbox.lease_until < at),
            ~exists().where(later.decision_id == Outbox.decision_id, later.step > Outbox.step,
                            later.state == "done", later.next_attempt_at.is_not(None)))
        if decision_id is not None:
            q = q.where(Outbox.decision_id == decision_id)
        q = q.order_by(Outbox.next_attempt_at, Outbox.id).limit(1)
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True, of=Outbox)
        with transaction(self.factory) as s:
            row_id = s.scalars(q).first()
            if row_id is None:
                return None
            row = s.get(Outbox, row_id)
            row.claimed_by = self.worker_id
            row.lease_until = at + timedelta(seconds=self._lease(row.action_type))
            return {"id": row.id, "decision_id": row.decision_id, "step": row.step, "action": row.action_type,
                    "key": row.idempotency_key, "params": dict(row.params or {}),
                    "result": dict(row.result or {})}

    def compensate_pending(self, decision_id: str | None = None, limit: int = 100,
                           deadline: float | None = None) -> Counter:
        """Undo the done steps of aborted sagas, latest step first; returns outcomes."""
        out = Counter()
        for _ in range(limit):
            if deadline is not None and self.clock() >= deadline:
                break
            job = self._claim_compensation(decision_id)
            if job is None:
                break
            out[self._compensate(job, deadline)] += 1
        return out

    def _comp_fenced(self, s, job) -> Outbox | None:
        q = select(Outbox).where(Outbox.id == job["id"])
        if self.dialect == "postgresql":
            q = q.with_for_update()
        row = s.scalars(q).first()
        if row is None or row.state != "done" or row.claimed_by != self.worker_id or row.next_attempt_at is None:
            return None
        return row

    def _compensate(self, job: dict, deadline) -> str:
        action = job["action"]
        adapter = self.registry.adapter_for(action)
        undo = self.registry.compensation_for(action)
        breaker = self.breakers[adapter.tool]
        permit = breaker.allow()
        wait = None if permit.allowed else permit.wait
        if wait is None:
            wait = self._rate_wait(adapter, deadline) or None
            if wait is not None:
                breaker.release(permit)
        if wait is not None:
            with transaction(self.factory) as s:
                row = self._comp_fenced(s, job)
                if row is not None:
                    row.next_attempt_at, row.lease_until = now() + timedelta(seconds=wait), None
            return "deferred"
        result = job["result"]
        attempt = int(result.get("compensation_attempts") or 0) + 1
        with transaction(self.factory) as s:
            row = self._comp_fenced(s, job)
            if row is None:
                breaker.release(permit)
                return "lost"
            row.result = {**result, "compensation_attempts": attempt}
            row.updated_at = now()
            self._event(s, job["decision_id"], "action.compensating",
                        {"step": job["step"], "action": action, "compensation": undo, "attempt": attempt})
        failed_step = self._failed_step(job["decision_id"])
        params = {"reason": f"saga aborted: step {failed_step} failed"}
        try:
            done = self.registry.compensate(action, result.get("reference"), compensation_key(job["key"]), params)
        except Exception as err:  # noqa: BLE001
            breaker.outcome(permit, err)
            return self._compensation_failed(job, attempt, err, adapter.retry)
        breaker.outcome(permit, None)
        at = now()
        with transaction(self.factory) as s:
            row = self._comp_fenced(s, job)
            if row is None:
                return "lost"
            kept = {k: v for k, v in result.items() if k not in CONTACT_KEYS}
            row.state = "compensated"
            row.result = {**kept, "compensation_attempts": attempt, "compensation": result_json(done)}
            row.next_attempt_at = row.lease_until = None
            row.last_error, row.updated_at = None, at
            self._event(s, job["decision_id"], "action.compensated",
                        {"step": job["step"], "action": action, "compensation": undo, "attempt": attempt,
                         "reference": done.reference})
            self._saga_finished(s, job["decision_id"])
        if self.policy.applies_to(action):
            channel = job["params"].get("channel")
            _, account = self._decision(job["decision_id"])
            self.contacts.release(key=job["key"], account=str(job["params"].get("account") or account or ""),
                                  channel=channel, limits=self.policy.limits_for(channel))
        return "compensated"

    def _compensation_failed(self, job, attempt, err, policy) -> str:
        retryable = err.retryable if isinstance(err, ToolError) else True
        final = not retryable or attempt >= policy.max_attempts
        at = now()
        with transaction(self.factory) as s:
            row = self._comp_fenced(s, job)
            if row is None:
                return "lost"
            row.lease_until, row.updated_at = None, at
            if final:
                row.next_attempt_at = None
                row.last_error = f"compensation failed for good after {attempt} attempts: {error_text(err)}"
                self._event(s, job["decision_id"], "action.compensation_failed",
                            {"step": job["step"], "action": job["action"], "attempt": attempt,
                             "error": error_kind(err), "final": True})
                self._saga_finished(s, job["decision_id"])
            else:
                wait = backoff_seconds(policy, attempt, getattr(err, "retry_after", None))
                row.next_attempt_at = at + timedelta(seconds=wait)
                row.last_error = f"compensation: {error_text(err)}"
                self._event(s, job["decision_id"], "action.compensation_retry",
                            {"step": job["step"], "action": job["action"], "attempt": attempt,
                             "error": error_kind(err), "wait_seconds": round(wait, 3)})
        log.warning("compensation of outbox row %s (%s) failed%s: %s", job["id"], job["action"],
                    " for good" if final else "", error_text(err))
        return "failed" if final else "retry"

    def _failed_step(self, decision_id: str) -> int | None:
        with self.factory() as s:
            return s.scalar(select(Outbox.step).where(Outbox.decision_id == decision_id, Outbox.state == "dead")
                            .order_by(Outbox.step).limit(1))

    def _saga_finished(self, s, decision_id: str) -> None:
        s.flush()
        rows = s.scalars(select(Outbox).where(Outbox.decision_id == decision_id).order_by(Outbox.step)).all()
        if any(r.state == "done" and r.next_attempt_at is not None for r in rows):
            return
        self._event(s, decision_id, "saga.compensated", {
            "failed_step": next((r.step for r in rows if r.state == "dead"), None),
            "compensated": [r.step for r in rows if r.state == "compensated"],
            "not_compensated": [r.step for r in rows if r.state == "done"
                                and (r.last_error or "").startswith("compensation failed")]})

    # ------------------------------------------------------------------ modes
    def work_one(self, deadline: float | None = None, decision_id: str | None = None,
                 compensations: bool = True) -> StepResult | str | None:
        """One unit of work: a pending compensation first (unless the caller knows there is
        none), else one due row. None: nothing to do."""
        if compensations:
            job = self._claim_compensation(decision_id)
            if job is not None:
                return self._compensate(job, deadline)
        got = self.claim(1, decision_id=decision_id)
        if not got:
            return None
        return self.process(got[0], deadline)

    def run_once(self, limit: int = 100, concurrency: int = 1, stop_event: threading.Event | None = None) -> Summary:
        """Everything due now, up to `limit` rows (a step unblocked by its predecessor counts as
        due), with `concurrency` threads; returns what happened."""
        summary = Summary()
        lock = threading.Lock()
        budget = [limit]

        def take() -> bool:
            with lock:
                if budget[0] <= 0:
                    return False
                budget[0] -= 1
                return True

        def loop():
            while (stop_event is None or not stop_event.is_set()) and take():
                try:
                    r = self.work_one()
                except Exception:  # noqa: BLE001 - a database hiccup: the row's lease brings it back
                    log.exception("dispatch pass failed")
                    return
                if r is None:
                    return
                with lock:
                    if isinstance(r, StepResult):
                        summary.add(r)
                    else:
                        summary.compensations[r] += 1

        if concurrency <= 1:
            loop()
        else:
            with ThreadPoolExecutor(concurrency, thread_name_prefix="dispatch") as pool:
                for f in [pool.submit(loop) for _ in range(concurrency)]:
                    f.result()
        return summary

    def run_forever(self, stop_event: threading.Event, poll: float = 1.0, concurrency: int = 1,
                    housekeeping=None, housekeeping_every: float = 30.0) -> None:
        """Work until `stop_event` is set: `concurrency` threads, each claiming one row at a time
        and sleeping `poll` seconds when nothing is due. In-flight calls finish before it returns.
        `housekeeping` (a callable) runs every `housekeeping_every` seconds in its own thread
        (e.g. expiring overdue approvals); its errors are logged and it runs again next time."""
        def chores():
            while not stop_event.wait(housekeeping_every):
                try:
                    housekeeping()
                except Exception:  # noqa: BLE001
                    log.exception("housekeeping failed; again in %ss", housekeeping_every)

        def loop():
            while not stop_event.is_set():
                try:
                    r = self.work_one()
                except Exception:  # noqa: BLE001
                    log.exception("dispatch loop error; retrying in %ss", poll)
                    r = None
                if r is None:
                    stop_event.wait(poll)

        threads = [threading.Thread(target=loop, name=f"dispatch-{i}", daemon=True) for i in range(concurrency)]
        if housekeeping is not None:
            threads.append(threading.Thread(target=chores, name="dispatch-housekeeping", daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def run_decision(self, decision_id: str, budget_seconds: float, first_action: str | None = None,
                     last_step: int | None = None) -> list[dict]:
        """Inline dispatch: this decision's due steps, in order, until done or the time budget is
        spent (a call already started finishes; the tool's timeout bounds it). What is left is
        for the workers. Returns the state of each of the decision's rows.

        `first_action`, for a decision recorded a moment ago: the type of its first step, which
        is ready. Then no compensation can be pending until a step dies, and when that step's
        tool has an open circuit or no rate-limit token now, nothing is claimed or written (the
        row stays ready for the workers) and [] is returned: under load, when the tools' limits
        are spent, inline dispatch costs no transaction. With `last_step` too (its number of
        steps), nothing is claimed after the last one, and the states returned are those of the
        rows this call moved ({id, step, type, state, attempts}) unless a step died or was
        deferred (then every row's, read back)."""
        deadline = self.clock() + max(0.0, budget_seconds)
        compensations = first_action is None
        if first_action is not None and not self._prepay(first_action):
            return []
        moved: list[StepResult] = []
        try:
            while self.clock() < deadline:
                try:
                    r = self.work_one(deadline, decision_id, compensations)
                except Exception:  # noqa: BLE001 - the decision is recorded; workers take over
                    log.exception("inline dispatch of decision %s failed", decision_id)
                    break
                if isinstance(r, StepResult):
                    moved.append(r)
                if r is None or (isinstance(r, StepResult) and r.state in ("retry", "deferred", "lost")):
                    break
                if isinstance(r, StepResult) and r.state == "dead":
                    compensations = True
                if (last_step is not None and isinstance(r, StepResult) and r.step >= last_step
                        and r.state in ("done", "suppressed")):
                    break
        finally:
            self._prepaid.tools = set()
        if last_step is not None and first_action is not None and all(m.state in ("done", "suppressed", "retry")
                                                                      for m in moved):
            return [{"id": m.id, "step": m.step, "type": m.action, "state": m.state, "attempts": m.attempts}
                    for m in moved]
        return self.states(decision_id)

    def remember(self, decision_id: str, result: dict, account: str | None, traceparent: str | None) -> None:
        """What the decision just recorded by this process holds (its result, account, trace),
        so running its steps does not read it back."""
        with self._lock:
            if len(self._decisions) > 2048:
                self._decisions.clear()
            self._decisions[decision_id] = (result, account, traceparent)

    def _prepay(self, action_type: str) -> bool:
        """False when the action's tool has an open circuit or no rate-limit token now; else
        True, holding the token taken for the step's call (process spends it)."""
        try:
            adapter = self.registry.adapter_for(action_type)
        except ToolError:
            return True  # process records the row dead
        if adapter.tool in self.breakers.open_tools():
            return False
        if self.limiter.acquire(adapter.tool, adapter.rate_limit) > 0:
            return False
        self._prepaid.tools = {adapter.tool}
        return True

    def states(self, decision_id: str) -> list[dict]:
        with self.factory() as s:
            rows = s.scalars(select(Outbox).where(Outbox.decision_id == decision_id).order_by(Outbox.step)).all()
            return [{"id": r.id, "step": r.step, "type": r.action_type, "state": r.state,
                     "attempts": r.attempts or 0, "idempotency_key": r.idempotency_key} for r in rows]

    def close(self) -> None:
        self.registry.close()


__all__ = ["Dispatcher", "StepResult", "Summary", "enrich", "result_json", "worker_name"]
