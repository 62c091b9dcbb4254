"""POST /v1/decisions, GET /v1/decisions/<id>, GET /v1/decisions?account_id=..."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError

from adapters.store.idempotency import MISMATCH, REPLAY, key_hash, request_hash
from engine.errors import DecisionError, FactsError

from . import metrics
from .auth import require
from .body import read_json
from .errors import Problem, TYPES, invalid
from .schemas import DecisionRequest, HistoryQuery, error_paths

bp = Blueprint("decisions", __name__)
log = logging.getLogger("postsale.api")
_request_schema = DecisionRequest()
_history_schema = HistoryQuery()


def _runtime():
    return current_app.extensions["postsale"]


def response_body(decision: dict, decision_id, created_at, dry_run: bool) -> dict:
    offers = decision["offers"]
    return {
        "id": decision_id,
        "created_at": created_at,
        "flow": decision["flow"],
        "ruleset_version": decision["ruleset_version"],
        "status": decision["status"],
        "dry_run": dry_run,
        "offers": offers,
        "discount": offers[0]["discount"] if offers else None,
        "escalations": decision["escalations"],
        "actions": decision["actions"],
        "approval": decision["approval"],
        "adjustments": decision["adjustments"],
        "blocked": decision["blocked"],
        "models": decision["models"],
        "explanation": {
            "fired": [f["id"] for f in decision["trace"]["fired"]],
            "guardrails": [a["reason"] for a in decision["adjustments"]],
            "dropped": [f"{d.get('offer') or d.get('type')}: {d['reason']}" for d in decision["trace"]["arbitration"]],
        },
    }


def _citations(rt, decision: dict) -> list:
    """Knowledge snippets for the decision; a knowledge failure never fails a decision."""
    try:
        from adapters.store.knowledge import cite_for_decision
        return cite_for_decision(rt.factory, decision)
    except Exception as exc:  # noqa: BLE001
        log.warning("knowledge lookup failed: %s", exc)
        return []


def _replay(stored):
    status, body = stored
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Idempotent-Replayed"] = "true"
    return resp


@bp.post("/v1/decisions")
@require("decide")
def decide():
    """Decide for one account.
    ---
    post:
      summary: Decide for one account
      parameters:
        - in: header
          name: Idempotency-Key
          schema: {type: string, maxLength: 255}
          description: the same key and body returns the stored response; another body gets 422
      requestBody:
        content:
          application/json:
            schema: DecisionRequest
      responses:
        201: {description: decided and recorded, content: {application/json: {schema: DecisionResponse}}}
        200: {description: a dry run, or a replay of an earlier response, content: {application/json: {schema: DecisionResponse}}}
        400: {description: every problem by JSON path, content: {application/problem+json: {schema: Problem}}}
        401: {description: no or unknown API key, content: {application/problem+json: {schema: Problem}}}
        403: {description: the key lacks the decide scope, content: {application/problem+json: {schema: Problem}}}
        413: {description: body too large, content: {application/problem+json: {schema: Problem}}}
        422: {description: idempotency key reused with another body, or the rules could not decide, content: {application/problem+json: {schema: Problem}}}
    """
    rt = _runtime()
    started = time.perf_counter()
    payload = read_json()
    if not isinstance(payload, dict):
        raise invalid([{"path": "$", "message": "the body must be a JSON object"}])
    try:
        req = _request_schema.load(payload)
    except ValidationError as err:
        problems = error_paths(err)
        facts = payload.get("facts")
        name = payload.get("flow") if isinstance(payload.get("flow"), str) else rt.settings.default_flow
        d = rt.decider(name)
        if isinstance(facts, dict) and d is not None:  # report the facts' problems in the same answer
            try:
                d.facts.prepare(facts)
            except FactsError as exc:
                problems += [{"path": "$.facts" + p.path[1:], "message": p.message} for p in exc.problems]
        raise invalid(sorted(problems, key=lambda e: e["path"])) from None
    flow_name = req["flow"] or rt.settings.default_flow
    decider = rt.decider(flow_name)
    if decider is None:
        raise invalid([{"path": "$.flow", "message": f"unknown flow '{flow_name}'; flows: {', '.join(sorted(rt.deciders))}"}])

    header = request.headers.get("Idempotency-Key")
    idem = None
    if header is not None:
        if not header or len(header) > 255:
            raise invalid([{"path": "header Idempotency-Key", "message": "must be 1 to 255 characters"}])
        idem = (key_hash(g.api_key_id, header), request_hash(payload))
        state, stored = rt.idempotency.lookup(*idem)
        if state == MISMATCH:
            raise _mismatch()
        if state == REPLAY:
            return _replay(stored)
        waited = rt.idempotency.wait_in_flight(*idem)
        if waited is not None:
            if waited[0] == MISMATCH:
                raise _mismatch()
            return _replay(waited[1])

    signals = None
    facts = req["facts"] or {}
    if req["account_id"] is not None:
        facts, signals = _from_features(flow_name, req["account_id"], facts)
    try:
        try:
            cpu = time.thread_time()
            decision, decided_facts = decider.decide_full(facts)
            cost = {"cpu_ms": round((time.thread_time() - cpu) * 1000, 3),
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
        except FactsError as exc:
            raise invalid([{"path": "$.facts" + p.path[1:], "message": p.message} for p in exc.problems],
                          "the facts do not fit the flow's facts schema") from None
        except DecisionError as exc:
            raise Problem(422, "The rules could not decide", str(exc), TYPES + "decision-failed", code=exc.code)
        if req["dry_run"]:
            body = response_body(decision, None, None, True)
            body["citations"] = _citations(rt, decision)
            return jsonify(body), 200
        stored_body = {}
        citations = _citations(rt, decision)  # looked up before the write, so a replay returns them too

        def complete(session, decision_id, at, result):
            stored_body.update(response_body(result, decision_id, at.isoformat().replace("+00:00", "Z"), False))
            stored_body["citations"] = citations
            if idem is not None:
                rt.idempotency.store(session, idem[0], idem[1], 201, stored_body)

        try:
            decision_id, _, _ = rt.decisions.record(
                flow=flow_name, version=decision["ruleset_version"], facts=decided_facts, context=req["context"],
                result=decision, request_hash=request_hash(payload), api_key_id=g.api_key_id, complete=complete,
                cost=cost, signals=signals)
        except IntegrityError:
            if idem is None:
                raise
            state, stored = rt.idempotency.lookup(*idem)  # a concurrent request with this key won
            if state == MISMATCH:
                raise _mismatch() from None
            return _replay(stored)
        if rt.settings.inline_dispatch_budget_ms > 0:  # act before answering, within the budget
            from adapters.dispatch.inline import dispatch_inline
            dispatch_inline(rt, decision_id, rt.settings.inline_dispatch_budget_ms / 1000, stored_body,
                            idem[0] if idem is not None else None)
        if idem is not None:
            rt.idempotency.cache(idem[0], idem[1], 201, stored_body)
        g.decision_id = decision_id
    finally:
        if idem is not None:
            rt.idempotency.release(idem[0])
    elapsed = time.perf_counter() - started
    metrics.DECISIONS.labels(flow_name, decision["status"], decision["ruleset_version"]).inc()
    metrics.LATENCY.labels(flow_name).observe(elapsed)
    metrics.CPU.labels(flow_name).observe(cost["cpu_ms"] / 1000)
    for f in decision["trace"]["fired"]:
        metrics.FIRINGS.labels(flow_name, f["id"]).inc()
    log.info("decided", extra={"flow": flow_name, "version": decision["ruleset_version"],
                               "ms": round(elapsed * 1000, 2)})
    resp = jsonify(stored_body)
    resp.status_code = 201
    resp.headers["Location"] = f"/v1/decisions/{decision_id}"
    return resp


def _from_features(flow: str, account_id: str, given: dict) -> tuple[dict, dict]:
    """The facts a trigger of the flow would build from the account's features now, with the
    request's facts laid over them; and the snapshot to record with the decision."""
    from datetime import datetime, timezone

    from engine.facts import overlay

    from .events import event_store
    store = event_store()
    trigger = store.triggers.for_flow(flow) if store.triggers else None
    if trigger is None:
        raise invalid([{"path": "$.account_id", "message": f"no trigger maps features onto flow '{flow}' "
                                                           "(config/triggers.yaml)"}])
    snap = store.snapshot(account_id)
    if snap is None:
        raise invalid([{"path": "$.account_id", "message": f"no events for account '{account_id}'"}])
    used = snap.used(datetime.now(timezone.utc))
    signals = {"newest_event_at": snap.newest_event_at, "features": used}
    facts = overlay(trigger.facts_for(used["values"]), given)
    stated = facts.get("account", {}).get("id") if isinstance(facts.get("account"), dict) else None
    if stated is not None and stated != account_id:
        raise invalid([{"path": "$.facts.account.id", "message": f"is '{stated}', but the decision is for account "
                                                                 f"'{account_id}' ($.account_id)"}])
    return facts, signals


def _mismatch() -> Problem:
    return Problem(422, "Idempotency key reused", "this Idempotency-Key was used with a different request body",
                   TYPES + "idempotency-mismatch")


@bp.get("/v1/decisions/<decision_id>")
@require("read")
def get_decision(decision_id: str):
    """One recorded decision with its trace and events.
    ---
    get:
      summary: A recorded decision
      parameters:
        - {in: path, name: decision_id, required: true, schema: {type: string}}
      responses:
        200: {description: the record, content: {application/json: {schema: DecisionRecord}}}
        404: {description: no such decision, content: {application/problem+json: {schema: Problem}}}
    """
    record = _runtime().decisions.get(decision_id) if len(decision_id) <= 64 else None
    if record is None:
        raise Problem(404, "Not found", f"no decision {decision_id}")
    return jsonify(record)


@bp.get("/v1/decisions")
@require("read")
def history():
    """An account's decisions, newest first.
    ---
    get:
      summary: Decision history of an account
      parameters:
        - {in: query, name: account_id, required: true, schema: {type: string}}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 500, default: 50}}
        - {in: query, name: after, schema: {type: string}, description: the 'next' value of the previous page}
      responses:
        200: {description: a page, content: {application/json: {schema: DecisionPage}}}
        400: {description: bad query, content: {application/problem+json: {schema: Problem}}}
    """
    try:
        q = _history_schema.load(request.args.to_dict())
    except ValidationError as err:
        raise invalid(error_paths(err, "query")) from None
    items = _runtime().decisions.history(q["account_id"], q["limit"] + 1, q["after"])
    more = len(items) > q["limit"]
    items = items[: q["limit"]]
    return jsonify({"items": items, "next": items[-1]["id"] if more else None})
