"""GET /v1/approvals, GET /v1/approvals/<id>, POST /v1/approvals/<id>/approve | reject.

Approvers (scope `approve`) see decisions held for a human and release or cancel their actions.
The key that asked for a decision cannot decide its approval; a rejection needs a comment; an
approver may lower or raise an offer's discount within the guardrails' limit. The work is in
adapters/store/approvals.py, the use cases in service/approvals.py; this module parses,
authorises and maps refusals to problems.
"""
from __future__ import annotations

import re

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError

from adapters.store.approvals import ApprovalNotFound, CommentRequired, EditRefused, NotPending, SelfApproval
from service.approvals import Approvals

from .auth import require
from .body import read_json
from .errors import TYPES, Problem, invalid
from .schemas import ApprovalQuery, ApproveRequest, RejectRequest, error_paths

bp = Blueprint("approvals", __name__)
_query = ApprovalQuery()
_approve = ApproveRequest()
_reject = RejectRequest()
_ID = re.compile(r"^[0-9a-f]{32}$")


def approvals() -> Approvals:
    """The approval use cases of this app's runtime, built on first use (the console shares them)."""
    ext = current_app.extensions
    if "postsale.approvals" not in ext:
        ext["postsale.approvals"] = Approvals(ext["postsale"])
    return ext["postsale.approvals"]


def _body(schema):
    """An optional JSON object body loaded with `schema`; every problem by path (400)."""
    payload = {} if not request.get_data() else read_json()
    if not isinstance(payload, dict):
        raise invalid([{"path": "$", "message": "the body must be a JSON object"}])
    try:
        return schema.load(payload)
    except ValidationError as err:
        raise invalid(_dict_paths(error_paths(err))) from None


def _dict_paths(errors: list[dict]) -> list[dict]:
    """marshmallow names a Dict entry's parts `.key` / `.value`; the caller wrote neither."""
    out = []
    for e in errors:
        path = re.sub(r"^(\$\.edits\.offers\.[^.]+)\.value(?=\.|$)", r"\1", e["path"])
        path, n = re.subn(r"^(\$\.edits\.offers\.[^.]+)\.key$", r"\1", path)
        message = "not an offer code (lowercase letters, digits and _)" if n else e["message"]
        out.append({"path": path, "message": message})
    return sorted(out, key=lambda e: e["path"])


def refusal(exc) -> Problem:
    if isinstance(exc, ApprovalNotFound):
        return Problem(404, "Not found", str(exc))
    if isinstance(exc, SelfApproval):
        return Problem(403, "Forbidden", str(exc), TYPES + "self-approval")
    if isinstance(exc, NotPending):
        return Problem(409, "Approval not pending", str(exc), TYPES + "approval-not-pending", state=exc.state)
    if isinstance(exc, EditRefused):
        return Problem(422, "Edit outside the guardrails", str(exc), TYPES + "edit-over-limit", errors=exc.errors)
    if isinstance(exc, CommentRequired):
        return invalid([{"path": "$.comment", "message": str(exc)}])
    raise exc  # pragma: no cover - every ApprovalError is mapped above


def _known(approval_id: str) -> str:
    if not _ID.match(approval_id):
        raise Problem(404, "Not found", f"no approval {approval_id[:64]}")
    return approval_id


@bp.get("/v1/approvals")
@require("approve")
def list_approvals():
    """Approval items, newest first.
    ---
    get:
      summary: Approval items (the approvers' queue)
      parameters:
        - {in: query, name: status, schema: {type: string, enum: [pending, approved, rejected, expired, all], default: pending}, description: "a pending item past its expiry is listed as expired"}
        - {in: query, name: queue, schema: {type: string}, description: "only items routed to this queue (csm, deal_desk, ...)"}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 500, default: 50}}
        - {in: query, name: after, schema: {type: string}, description: the 'next' value of the previous page}
      responses:
        200: {description: a page, content: {application/json: {schema: ApprovalPage}}}
        400: {description: "bad query, every problem by path", content: {application/problem+json: {schema: Problem}}}
        401: {description: no or unknown API key, content: {application/problem+json: {schema: Problem}}}
        403: {description: the key lacks the approve scope, content: {application/problem+json: {schema: Problem}}}
    """
    try:
        q = _query.load(request.args.to_dict())
    except ValidationError as err:
        raise invalid(error_paths(err, "query")) from None
    items = approvals().list(q["status"], q["queue"], q["limit"] + 1, q["after"])
    more = len(items) > q["limit"]
    items = items[: q["limit"]]
    return jsonify({"items": items, "next": items[-1]["id"] if more else None})


@bp.get("/v1/approvals/<approval_id>")
@require("approve")
def get_approval(approval_id: str):
    """One approval item with what it proposes, why, and the decision's explanation.
    ---
    get:
      summary: An approval item
      parameters:
        - {in: path, name: approval_id, required: true, schema: {type: string}}
      responses:
        200: {description: "the item, its decision's explanation, each action's current state, the discount limits and the events", content: {application/json: {schema: ApprovalItem}}}
        404: {description: no such approval, content: {application/problem+json: {schema: Problem}}}
    """
    item = approvals().get(_known(approval_id))
    if item is None:
        raise Problem(404, "Not found", f"no approval {approval_id}")
    return jsonify(item)


@bp.post("/v1/approvals/<approval_id>/approve")
@require("approve")
def approve(approval_id: str):
    """Approve: the held actions are released to the dispatcher, once.
    ---
    post:
      summary: Approve a held decision (optionally editing a discount)
      parameters:
        - {in: path, name: approval_id, required: true, schema: {type: string}}
      requestBody:
        required: false
        content:
          application/json:
            schema: ApproveRequest
            example: {comment: "spoke to the CSM, go ahead", edits: {offers: {renewal_36m: {discount: 18}}}}
      responses:
        200: {description: "approved: the released actions run inline within POSTSALE_INLINE_DISPATCH_MS (the outbox states say how far they got); the workers take the rest", content: {application/json: {schema: ApprovalItem}}}
        400: {description: "bad body, every problem by path", content: {application/problem+json: {schema: Problem}}}
        403: {description: "the key lacks the approve scope, or it asked for this decision", content: {application/problem+json: {schema: Problem}}}
        404: {description: no such approval, content: {application/problem+json: {schema: Problem}}}
        409: {description: "already approved, rejected or expired (`state` says which); nothing changed", content: {application/problem+json: {schema: Problem}}}
        422: {description: "an edit above the guardrails' limit (each in `errors`, with its `limit`); nothing changed", content: {application/problem+json: {schema: Problem}}}
    """
    approval_id = _known(approval_id)
    body = _body(_approve)
    try:
        item = approvals().approve(approval_id, g.api_key_id, comment=body["comment"], edits=body["edits"])
    except (ApprovalNotFound, SelfApproval, NotPending, EditRefused) as exc:
        raise refusal(exc) from None
    return jsonify(item)


@bp.post("/v1/approvals/<approval_id>/reject")
@require("approve")
def reject(approval_id: str):
    """Reject: the held actions are cancelled; a comment is required.
    ---
    post:
      summary: Reject a held decision
      parameters:
        - {in: path, name: approval_id, required: true, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/json:
            schema: RejectRequest
            example: {comment: "the account is moving to a competitor; no offer this quarter"}
      responses:
        200: {description: rejected; the actions are cancelled, content: {application/json: {schema: ApprovalItem}}}
        400: {description: "no comment, or a bad body: every problem by path", content: {application/problem+json: {schema: Problem}}}
        403: {description: "the key lacks the approve scope, or it asked for this decision", content: {application/problem+json: {schema: Problem}}}
        404: {description: no such approval, content: {application/problem+json: {schema: Problem}}}
        409: {description: "already approved, rejected or expired (`state` says which); nothing changed", content: {application/problem+json: {schema: Problem}}}
    """
    approval_id = _known(approval_id)
    body = _body(_reject)
    try:
        item = approvals().reject(approval_id, g.api_key_id, body["comment"])
    except (ApprovalNotFound, SelfApproval, NotPending, CommentRequired) as exc:
        raise refusal(exc) from None
    return jsonify(item)
