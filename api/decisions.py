"""POST /v1/decisions, GET /v1/decisions/<id>, GET /v1/decisions?account_id=..."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError

from service import decide as service
from service.decide import DecideCommand, Decided, facts_problems, request_hash

from . import limits
from .auth import require
from .body import read_json
from .errors import Problem, invalid
from .schemas import DecisionRequest, HistoryQuery, error_paths

bp = Blueprint("decisions", __name__)
_request_schema = DecisionRequest()
_history_schema = HistoryQuery()


def _runtime():
    return current_app.extensions["postsale"]


def _answer(done: Decided):
    resp = jsonify(done.body)
    resp.status_code = done.status
    if done.replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    elif done.recorded:
        resp.headers["Location"] = f"/v1/decisions/{done.decision.id}"
        g.decision_id = done.decision.id
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
        201: {description: "decided and recorded; a replay of that answer (the same key and body) is 201 too, with Idempotent-Replayed: true", content: {application/json: {schema: DecisionResponse}}}
        200: {description: a dry run, content: {application/json: {schema: DecisionResponse}}}
        400: {description: every problem by JSON path, content: {application/problem+json: {schema: Problem}}}
        401: {description: no or unknown API key, content: {application/problem+json: {schema: Problem}}}
        403: {description: the key lacks the decide scope, content: {application/problem+json: {schema: Problem}}}
        413: {description: body too large, content: {application/problem+json: {schema: Problem}}}
        422: {description: "idempotency key reused with another body, or the rules could not decide", content: {application/problem+json: {schema: Problem}}}
    """
    rt = _runtime()
    payload = read_json()
    if not isinstance(payload, dict):
        raise invalid([{"path": "$", "message": "the body must be a JSON object"}])
    too_wide = limits.decision_problems(payload)
    if too_wide:
        raise invalid(too_wide)
    try:
        req = _request_schema.load(payload)
    except ValidationError as err:
        flow = payload.get("flow") if isinstance(payload.get("flow"), str) else None
        problems = error_paths(err) + facts_problems(rt, flow, payload.get("facts"))
        raise invalid(sorted(problems, key=lambda e: e["path"])) from None
    header = request.headers.get("Idempotency-Key")
    if header is not None and (not header or len(header) > 255):
        raise invalid([{"path": "header Idempotency-Key", "message": "must be 1 to 255 characters"}])
    return _answer(service.decide(rt, DecideCommand(
        facts=req["facts"], flow=req["flow"], account_id=req["account_id"], context=req["context"],
        dry_run=req["dry_run"], api_key_id=g.api_key_id, idempotency_key=header, request_hash=request_hash(payload))))


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
