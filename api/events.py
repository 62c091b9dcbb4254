"""Signals in: POST /v1/events; an account's features and events; replay."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify, request

from service import decide
from engine.signals.events import EventError, iso, parse_time

from adapters import metrics
from .auth import require
from .body import read_json
from .errors import TYPES, Problem, invalid

bp = Blueprint("events", __name__)
log = logging.getLogger("postsale.api")


def _runtime():
    return current_app.extensions["postsale"]


def event_store():
    """The runtime's event store; a triggers file that does not load is a 503 that says what to run."""
    return decide.event_store(_runtime())


@bp.post("/v1/events")
@require("ingest")
def ingest():
    """Append events (one, a list, or {"events": [...]}) to the event store.
    ---
    post:
      summary: Send account events (CRM, product telemetry, support, billing)
      description: >
        Every event is checked against its type's JSON Schema; when any is bad, the answer lists
        every problem by JSON path and nothing is stored. An event id seen before is a duplicate
        and changes nothing. Accepted events fold into the account's features and schedule the
        flows their triggers name (debounced).
      requestBody:
        content:
          application/json:
            schema: {type: object}
      responses:
        202: {description: stored (duplicates listed), content: {application/json: {schema: {type: object}}}}
        400: {description: every problem by JSON path, content: {application/problem+json: {schema: Problem}}}
        401: {description: no or unknown API key, content: {application/problem+json: {schema: Problem}}}
        403: {description: the key lacks the ingest scope, content: {application/problem+json: {schema: Problem}}}
        413: {description: body too large, content: {application/problem+json: {schema: Problem}}}
    """
    payload = read_json()
    try:
        from engine.signals.events import parse_events
        events = parse_events(payload)
    except EventError as exc:
        metrics.EVENTS.labels("invalid", "rejected").inc()
        raise invalid([{"path": p.path, "message": p.message} for p in exc.problems],
                      "the events do not fit their schemas; nothing was stored") from None
    result = event_store().ingest(events)
    fresh = set(result.accepted)
    for e in events:
        metrics.EVENTS.labels(e.type, "accepted" if e.id in fresh else "duplicate").inc()
        fresh.discard(e.id)  # a second copy in the same batch is a duplicate
    return jsonify(result.as_json()), 202


def _as_of() -> datetime:
    raw = request.args.get("as_of")
    if raw is None:
        return datetime.now(timezone.utc)
    problems: list = []
    at = parse_time(raw, "query.as_of", problems)
    if problems:
        raise invalid([{"path": p.path, "message": p.message} for p in problems])
    return at


def _account(account_id: str) -> str:
    if not account_id or len(account_id) > 128:
        raise Problem(404, "Not found", "no such account")
    return account_id


@bp.get("/v1/accounts/<account_id>/features")
@require("read")
def features(account_id: str):
    """The account's features as of a time (default now), from its folded events.
    ---
    get:
      summary: An account's features
      parameters:
        - {in: path, name: account_id, required: true, schema: {type: string}}
        - {in: query, name: as_of, schema: {type: string, format: date-time}}
      responses:
        200: {description: the features, content: {application/json: {schema: {type: object}}}}
        404: {description: no events for this account (by as_of), content: {application/problem+json: {schema: Problem}}}
    """
    at = _as_of()
    store, account = event_store(), _account(account_id)
    snap = store.snapshot_at(account, at) if "as_of" in request.args else store.snapshot(account)
    if snap is None:
        raise Problem(404, "Not found", f"no events for account {account_id}")
    return jsonify({"account_id": account_id, "as_of": iso(at), "version": snap.version, "last_seq": snap.last_seq,
                    "newest_event_at": iso(snap.newest_event_at) if snap.newest_event_at else None,
                    "features": snap.features(at)})


@bp.get("/v1/accounts/<account_id>/events")
@require("read")
def events(account_id: str):
    """The account's events in the order they were stored.
    ---
    get:
      summary: An account's events
      parameters:
        - {in: path, name: account_id, required: true, schema: {type: string}}
        - {in: query, name: after, schema: {type: integer}, description: the 'next' value of the previous page}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
      responses:
        200: {description: a page, content: {application/json: {schema: {type: object}}}}
    """
    problems = []
    try:
        limit = int(request.args.get("limit", 100))
        if not 1 <= limit <= 1000:
            raise ValueError
    except ValueError:
        problems.append({"path": "query.limit", "message": "must be a whole number from 1 to 1000"})
    after = None
    try:
        after = int(request.args["after"]) if "after" in request.args else None
        if after is not None and not 0 <= after < 2 ** 63:
            raise ValueError
    except ValueError:
        problems.append({"path": "query.after", "message": "must be a whole number from 0 (a seq)"})
    if problems:
        raise invalid(problems)
    items = event_store().events(_account(account_id), limit + 1, after)
    more = len(items) > limit
    items = items[:limit]
    return jsonify({"items": items, "next": items[-1]["seq"] if more else None})


@bp.post("/v1/accounts/<account_id>/features/rebuild")
@require("admin")
def rebuild(account_id: str):
    """Replay the account's events and replace its feature state with the result.
    ---
    post:
      summary: Rebuild an account's features from its events
      parameters:
        - {in: path, name: account_id, required: true, schema: {type: string}}
      responses:
        200: {description: rebuilt; `identical` says whether the stored state already matched, content: {application/json: {schema: {type: object}}}}
    """
    return jsonify(event_store().rebuild(_account(account_id)))
