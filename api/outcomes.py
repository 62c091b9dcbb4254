"""POST /v1/outcomes, GET /v1/decisions/<id>/outcomes.

What happened after a decision: renewed, expanded, churned, an offer accepted or declined. One
outcome or a batch (`{"outcomes": [...]}`), all or nothing, every problem by JSON path. An
outcome's `id` makes a retry safe: the same id and body replays the stored record (200); the
same id with another body is refused (409). The work is in adapters/store/outcomes.py.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify
from marshmallow import ValidationError

from adapters.store.outcomes import OutcomeConflict, OutcomeProblems, OutcomeStore

from .auth import require
from .body import read_json
from .errors import TYPES, Problem, invalid
from .schemas import OutcomeBatch, OutcomeRequest, error_paths

bp = Blueprint("outcomes", __name__)
_single = OutcomeRequest()
_batch = OutcomeBatch()


def store() -> OutcomeStore:
    ext = current_app.extensions
    if "postsale.outcomes" not in ext:
        ext["postsale.outcomes"] = OutcomeStore(ext["postsale"].factory)
    return ext["postsale.outcomes"]


def _raw_items(payload: dict) -> tuple[list, list[str]]:
    if "outcomes" in payload:
        items = payload["outcomes"] if isinstance(payload["outcomes"], list) else []
        return items, [f"$.outcomes[{n}]" for n in range(len(items))]
    return [payload], ["$"]


@bp.post("/v1/outcomes")
@require("decide")
def record_outcomes():
    """Record what happened after decisions.
    ---
    post:
      summary: 'Record outcomes (one, or a batch as {"outcomes": [...]})'
      requestBody:
        content:
          application/json:
            schema:
              oneOf: [{$ref: '#/components/schemas/OutcomeRequest'}, {$ref: '#/components/schemas/OutcomeBatch'}]
            example: {id: "crm-renewal-7781", decision_id: "01a2358a3198ae2cc2904da375c0a6d4", type: renewed, amount: 201600, occurred_at: "2027-01-20T09:30:00Z"}
      responses:
        201: {description: "recorded: the record, or {outcomes: [...]} for a batch", content: {application/json: {schema: OutcomeRecord}}}
        200: {description: "every item was recorded before with the same id and body: the stored records (Idempotent-Replayed: true)", content: {application/json: {schema: OutcomeRecord}}}
        400: {description: "every problem by JSON path ($.decision_id, $.outcomes[2].offer, ...); nothing written", content: {application/problem+json: {schema: Problem}}}
        401: {description: no or unknown API key, content: {application/problem+json: {schema: Problem}}}
        403: {description: the key lacks the decide scope, content: {application/problem+json: {schema: Problem}}}
        409: {description: "an id recorded before with another body (each in errors); nothing written", content: {application/problem+json: {schema: Problem}}}
    """
    payload = read_json()
    if not isinstance(payload, dict):
        raise invalid([{"path": "$", "message": "the body must be a JSON object: an outcome or {\"outcomes\": [...]}"}])
    batch = "outcomes" in payload
    try:
        loaded = (_batch if batch else _single).load(payload)
    except ValidationError as err:
        problems = error_paths(err)
        named = {p["path"] for p in problems}
        raw, paths = _raw_items(payload)
        problems += [p for p in store().check(raw, paths) if p["path"] not in named]
        raise invalid(sorted(problems, key=lambda e: e["path"])) from None
    items = loaded["outcomes"] if batch else [loaded]
    paths = [f"$.outcomes[{n}]" for n in range(len(items))] if batch else ["$"]
    try:
        records, created = store().record(items, paths, g.api_key_id)
    except OutcomeConflict as exc:
        raise Problem(409, "Outcome id reused", "an outcome id was recorded before with another body; nothing "
                      "was written", TYPES + "outcome-conflict", errors=exc.errors) from None
    except OutcomeProblems as exc:
        raise invalid(exc.errors) from None
    resp = jsonify({"outcomes": records} if batch else records[0])
    resp.status_code = 201 if created else 200
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@bp.get("/v1/decisions/<decision_id>/outcomes")
@require("read")
def decision_outcomes(decision_id: str):
    """A decision's outcomes, in the order they occurred.
    ---
    get:
      summary: Outcomes of a decision
      parameters:
        - {in: path, name: decision_id, required: true, schema: {type: string}}
      responses:
        200: {description: the outcomes, content: {application/json: {schema: OutcomeList}}}
        404: {description: no such decision, content: {application/problem+json: {schema: Problem}}}
    """
    found = store().for_decision(decision_id) if len(decision_id) <= 64 else None
    if found is None:
        raise Problem(404, "Not found", f"no decision {decision_id[:64]}")
    return jsonify({"decision_id": decision_id, "outcomes": found})
