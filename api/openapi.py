"""The OpenAPI 3 document, generated from the marshmallow schemas and the views' docstrings."""
from __future__ import annotations

import json
from pathlib import Path

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_operations_from_docstring

from . import schemas

DOCUMENTED = ("decisions.decide", "decisions.get_decision", "decisions.history", "rulesets.list_rulesets",
              "rulesets.reload", "rulesets.list_models", "approvals.list_approvals", "approvals.get_approval",
              "approvals.approve", "approvals.reject", "events.ingest", "events.features", "events.events",
              "events.rebuild", "outcomes.record_outcomes", "outcomes.decision_outcomes", "kpis.kpis",
              "kpis.holdout", "rollouts.status", "rollouts.start", "rollouts.abort", "rollouts.promote",
              "rollouts.rollback")

# request bodies shown with the files the README walks through, so the reference and the
# quick start never disagree
EXAMPLES = {"decisions.decide": "decision-request.json", "events.ingest": "events.json"}
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


# what any authenticated operation can answer besides its own statuses: the parameter and body
# bounds (api/limits.py), the key check, and the database being away
COMMON = {
    400: "a parameter or the body has problems, each listed by path in 'errors'",
    401: "no or unknown API key",
    403: "the key lacks the scope this operation needs",
    429: "this key sent more requests of this scope than POSTSALE_RATE_LIMITS allows; Retry-After says when to "
         "send again",
    503: "the database cannot be reached now (database-unavailable; Retry-After says when to try again) "
         "or the rules are not loaded yet",
}


def _every_status(op: dict) -> None:
    """Add the statuses every operation can return (COMMON; 413 where a body is read) that its
    docstring does not name, so the document states every status each operation can return."""
    responses = op.setdefault("responses", {})
    named = {str(k) for k in responses}
    extra = dict(COMMON)
    if "requestBody" in op:
        extra[413] = "the body is larger than POSTSALE_MAX_BODY_BYTES"
    for status, description in extra.items():
        if str(status) not in named:
            responses[status] = _problem(description)
    for status in (429, 503):
        answer = responses.get(status) or responses.get(str(status))
        if answer is not None:
            answer.setdefault("headers", {})["Retry-After"] = {
                "description": "seconds to wait before sending the request again", "schema": {"type": "integer"}}


def build(app) -> dict:
    spec = APISpec(title="postsale", version="1", openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
                   info={"description": "Post-sale revenue decisions. Authenticate with `Authorization: Bearer <key>`."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name in ("DecisionRequest", "DecisionResponse", "DecisionRecord", "DecisionPage", "Problem",
                 "ApproveRequest", "RejectRequest", "ApprovalItem", "ApprovalPage", "OutcomeRequest", "OutcomeBatch",
                 "OutcomeRecord", "OutcomeList", "KpiAnswer", "RolloutRequest"):
        spec.components.schema(name, schema=getattr(schemas, name))
    rules = {r.endpoint: r for r in app.url_map.iter_rules()}
    for endpoint in DOCUMENTED:
        rule = rules[endpoint]
        view = app.view_functions[endpoint]
        ops = load_operations_from_docstring(view.__doc__ or "")
        for op in ops.values():
            op.setdefault("security", [{"bearer": []}])
            _every_status(op)
            if endpoint in EXAMPLES and (EXAMPLES_DIR / EXAMPLES[endpoint]).is_file():  # a checkout ships them
                example = json.loads((EXAMPLES_DIR / EXAMPLES[endpoint]).read_text(encoding="utf-8"))
                op["requestBody"]["content"]["application/json"]["example"] = example
        path = rule.rule.replace("<", "{").replace(">", "}")
        spec.path(path=path, operations=ops)
    return spec.to_dict()
