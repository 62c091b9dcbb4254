"""The decide use case: one decision, the same for the HTTP API, the triggered evaluator and
the CLI.

    validate → features (when an account id is given) → score → rules → guardrails → choose
      → plan → record with its outbox (one transaction) → dispatch inline (within a budget)

While a rollout candidate runs (service/rollout.py), a canary's accounts are decided by it, and
a shadow decides every recorded decision a second time, its plan written in the decision's row.

Nothing before the write touches a database: engines, versions and citations are in memory
(service/runtime.py). The answer is built after the commit, so what is acknowledged is durable.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError

from adapters import metrics, telemetry
from adapters.store.capacity import SlotsTaken
from adapters.store.db import iso
from adapters.store.idempotency import MISMATCH, REPLAY, key_hash, request_hash
from engine.decision import Decision
from engine.errors import DecisionError, FactsError, RulesetError

from . import rollout
from .errors import DecisionFailed, IdempotencyMismatch, InvalidRequest, Unavailable

log = logging.getLogger("postsale.decide")


@dataclass(frozen=True)
class DecideCommand:
    """`facts` and/or `account_id` (the account's features, with `facts` laid over them);
    `idempotency_key` is the caller's key as sent; `request_hash` identifies the request (by
    default, the facts decided on); `signals` the feature snapshot a trigger used."""
    facts: dict | None = None
    flow: str | None = None
    account_id: str | None = None
    context: dict = field(default_factory=dict)
    dry_run: bool = False
    api_key_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    signals: dict | None = None


@dataclass(frozen=True)
class Decided:
    """`body` is the answer (a stored one when `replayed`); `recorded`: a new decision row;
    `skipped`: the caller's `unless` held and nothing was written."""
    body: dict
    status: int = 200
    decision: Decision | None = None
    recorded: bool = False
    replayed: bool = False
    skipped: bool = False
    at: datetime | None = None


def flow_of(rt, name: str | None):
    """The named (or default) flow's decider, or InvalidRequest naming the flows there are."""
    name = name or rt.settings.default_flow
    decider = rt.decider(name)
    if decider is None and not rt.deciders:
        raise Unavailable("Rules not loaded", "no flow is loaded yet (the database was away when this process "
                          "started); retry shortly", "rules-unavailable")
    if decider is None:
        raise InvalidRequest([{"path": "$.flow", "message": f"unknown flow '{name}'; flows: {', '.join(sorted(rt.deciders))}"}])
    return name, decider


def facts_problems(rt, flow: str | None, facts) -> list[dict]:
    """The facts' problems against the flow's schema, by JSON path (for an answer that lists
    the request's other problems too); [] when they fit or the flow is unknown."""
    decider = rt.decider(flow or rt.settings.default_flow)
    if not isinstance(facts, dict) or decider is None:
        return []
    try:
        decider.facts.prepare(facts)
    except FactsError as exc:
        return _paths(exc)
    return []


def decide(rt, cmd: DecideCommand, *, complete=None, unless=None) -> Decided:
    """Decide, record and dispatch. `complete(session, decision_id, at, result)` finishes the
    caller's own records in the decision's transaction (raising rolls it all back); `unless(result)`
    true skips recording (the evaluator's "nothing changed")."""
    started, cpu = time.perf_counter(), time.thread_time()
    flow, decider = flow_of(rt, cmd.flow)
    idem = None
    if cmd.idempotency_key is not None and not cmd.dry_run:
        idem = (key_hash(cmd.api_key_id, cmd.idempotency_key), cmd.request_hash)
        state, stored = rt.idempotency.lookup(*idem)
        if state == REPLAY:
            return Decided(body=stored[1], status=stored[0], replayed=True)
        if state == MISMATCH:
            raise IdempotencyMismatch()
        waited = rt.idempotency.wait_in_flight(*idem)
        if waited is not None:
            if waited[0] == MISMATCH:
                raise IdempotencyMismatch()
            return Decided(body=waited[1][1], status=waited[1][0], replayed=True)
    try:
        with telemetry.tracer("postsale.service").start_as_current_span(
                f"decide {flow}", attributes={"postsale.flow": flow, "postsale.dry_run": cmd.dry_run}) as span:
            done = _decide(rt, cmd, flow, decider, idem, started, cpu, complete, unless)
            if done.decision is not None:
                span.set_attribute("postsale.status", done.decision.status)
                if done.decision.id:
                    span.set_attribute("postsale.decision_id", done.decision.id)
            return done
    finally:
        if idem is not None:
            rt.idempotency.release(idem[0])


def _decide(rt, cmd, flow, decider, idem, started, cpu, complete, unless) -> Decided:
    facts, signals = cmd.facts or {}, cmd.signals
    if cmd.account_id is not None:
        facts, signals = _from_features(rt, flow, cmd.account_id, facts)
    deferred = getattr(rt.capacity, "deferred", None)
    capacity = deferred() if deferred is not None and not cmd.dry_run else None
    candidate = rt.candidates.get(flow)
    if candidate is not None and candidate.serves(_account_of(facts)):
        decider, candidate = candidate.decider, None
    at = cmd.context.get("decision_time")
    while True:
        result, decided = _rules(rt, decider, facts, cmd.dry_run, capacity, at)
        cost = {"cpu_ms": round((time.thread_time() - cpu) * 1000, 3),
                "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
        if cmd.dry_run:
            decision = Decision.from_result(result, dry_run=True)
            _observe(flow, decision, started, cost, recorded=False)
            return Decided(body=decision.to_json(), decision=decision)
        if unless is not None and unless(result):
            return Decided(body={}, skipped=True)
        shadowed = rollout.shadow(candidate, facts, result, capacity, at) \
            if candidate is not None and candidate.mode == "shadow" else None
        try:
            recorded = _record(rt, cmd, flow, idem, result, decided, signals, cost, complete,
                               capacity.claims if capacity is not None else (), shadowed)
        except SlotsTaken as taken:
            capacity = capacity.again(taken)  # the last slot went elsewhere: decide without it
            continue
        if isinstance(recorded, Decided):
            return recorded
        decision_id, at, planned, body = recorded
        break
    budget = rt.settings.inline_dispatch_budget_ms
    if budget > 0:
        from adapters.dispatch.inline import dispatch_inline
        account = _account_of(decided)
        dispatch_inline(rt.dispatcher(), rt.factory, decision_id, budget / 1000, body,
                        idem[0] if idem is not None else None,
                        recorded=(planned, account, telemetry.traceparent() or cmd.context.get("traceparent")))
    if idem is not None:
        rt.idempotency.cache(idem[0], idem[1], 201, body)
    decision = Decision.from_result(planned, id=decision_id, created_at=body["created_at"])
    _observe(flow, decision, started, cost, recorded=True)
    rollout.counted(flow, shadowed)
    return Decided(body=body, status=201, decision=decision, recorded=True, at=at)


def _rules(rt, decider, facts, dry_run, capacity, now=None):
    """(result with its citations, the facts decided on): the engine's part of the path."""
    try:
        result, decided = decider.decide_full(facts, claim=not dry_run, capacity=capacity, now=now)
    except FactsError as exc:
        raise InvalidRequest(_paths(exc), "the facts do not fit the flow's facts schema", raw=exc.problems) from None
    except DecisionError as exc:
        raise DecisionFailed(str(exc), exc.code) from None
    result["citations"] = rt.citations(result)
    if decider.facts.pii:  # what is recorded holds no personal value the schema marks
        decided = decider.facts.pii.apply(decided, rt.settings.pii_key.encode())
    return result, decided


def _account_of(facts: dict):
    account = facts.get("account")
    return account.get("id") if isinstance(account, dict) else None


def _record(rt, cmd, flow, idem, result, decided, signals, cost, complete, claims, shadowed=None):
    """(decision id, time, planned result, answer body) once written with its outbox and slots;
    a Decided replay when a concurrent request with the same key was recorded first."""
    body: dict = {}
    req_hash = cmd.request_hash or hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()

    def respond(decision_id, at, planned):
        body.update(Decision.from_result(planned, id=decision_id, created_at=iso(at)).to_json())
        return [rt.idempotency.row(idem[0], idem[1], 201, body, at)] if idem is not None else []

    # the decision's trace, recorded with it: the outbox's calls continue it, whichever worker runs them
    context = {**cmd.context, **({"traceparent": tp} if (tp := telemetry.traceparent()) else {})}
    try:
        with telemetry.tracer("postsale.service").start_as_current_span("decision.record",
                                                                       kind=telemetry.SpanKind.CLIENT,
                                                                       attributes={"db.system": rt.db.dialect.name}):
            decision_id, at, planned = rt.decisions.record(
                flow=flow, version=result["ruleset_version"], facts=decided, context=context, result=result,
                request_hash=req_hash, api_key_id=cmd.api_key_id, extra=respond, complete=complete, cost=cost,
                signals=signals, claims=claims, shadow=shadowed)
    except IntegrityError:
        if idem is None:
            raise
        state, stored = rt.idempotency.lookup(*idem)  # a concurrent request with this key won
        if state == MISMATCH:
            raise IdempotencyMismatch() from None
        return Decided(body=stored[1], status=stored[0], replayed=True)
    return decision_id, at, planned, body


def _observe(flow: str, decision: Decision, started: float, cost: dict, recorded: bool) -> None:
    metrics.child(metrics.DECISIONS, flow, decision.status, decision.ruleset_version).inc()
    metrics.child(metrics.LATENCY, flow).observe(time.perf_counter() - started)
    metrics.child(metrics.CPU, flow).observe(cost["cpu_ms"] / 1000)
    for rule in decision.fired:
        metrics.child(metrics.FIRINGS, flow, rule).inc()
    if recorded:
        log.info("decided", extra={**decision.log_fields(), "ms": round((time.perf_counter() - started) * 1000, 2)})


def event_store(rt):
    """The runtime's event store; Unavailable when the triggers file does not load."""
    try:
        return rt.events
    except RulesetError as exc:
        log.error("the triggers do not load: %s", exc)
        raise Unavailable("Triggers do not load", "the triggers configuration has errors; see "
                          "`postsale triggers check`", "triggers-invalid") from None


def _paths(exc: FactsError) -> list[dict]:
    return [{"path": "$.facts" + p.path[1:], "message": p.message} for p in exc.problems]


def _from_features(rt, flow: str, account_id: str, given: dict) -> tuple[dict, dict]:
    """The facts a trigger of the flow would build from the account's features now, with the
    given facts laid over them; and the snapshot to record with the decision."""
    from engine.facts import overlay
    store = event_store(rt)
    trigger = store.triggers.for_flow(flow) if store.triggers else None
    if trigger is None:
        raise InvalidRequest([{"path": "$.account_id",
                               "message": f"no trigger maps features onto flow '{flow}' (config/triggers.yaml)"}])
    snap = store.snapshot(account_id)
    if snap is None:
        raise InvalidRequest([{"path": "$.account_id", "message": f"no events for account '{account_id}'"}])
    used = snap.used(datetime.now(timezone.utc))
    signals = {"newest_event_at": snap.newest_event_at, "features": used}
    facts = overlay(trigger.facts_for(used["values"]), given)
    stated = _account_of(facts)
    if stated is not None and stated != account_id:
        raise InvalidRequest([{"path": "$.facts.account.id",
                               "message": f"is '{stated}', but the decision is for account '{account_id}' ($.account_id)"}])
    return facts, signals


__all__ = ["DecideCommand", "Decided", "decide", "event_store", "facts_problems", "flow_of", "request_hash"]
