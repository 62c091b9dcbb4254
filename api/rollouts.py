"""/v1/rollouts/{flow}: a candidate ruleset version in shadow or canary, promoted or rolled back
(service/rollout.py). `author` starts and aborts a candidate, `admin` promotes and rolls back,
`read` looks; the key that started a candidate cannot promote it."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify
from marshmallow import ValidationError

from engine.errors import RulesetError
from service import rollout

from .auth import require
from .body import read_json
from .errors import invalid
from .rulesets import rules_invalid
from .schemas import RolloutRequest, error_paths

bp = Blueprint("rollouts", __name__)
_request = RolloutRequest()


def _rt():
    return current_app.extensions["postsale"]


@bp.get("/v1/rollouts/<flow>")
@require("read")
def status(flow):
    """The active version, the candidate with what it did since it started, the latest steps.
    ---
    get:
      summary: A flow's rollout
      parameters: [{name: flow, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: "active version, candidate (shadow same/changed counts and changed examples; decisions per version), steps"}
        404: {description: no such flow, content: {application/problem+json: {schema: Problem}}}
    """
    return jsonify(rollout.status(_rt(), flow))


@bp.post("/v1/rollouts/<flow>")
@require("author")
def start(flow):
    """Start (or replace) the flow's candidate: the rules on disk, or a recorded version.
    ---
    post:
      summary: Start a shadow or canary
      parameters: [{name: flow, in: path, required: true, schema: {type: string}}]
      requestBody: {required: true, content: {application/json: {schema: RolloutRequest}}}
      responses:
        200: {description: the rollout as GET shows it}
        404: {description: no such flow or version, content: {application/problem+json: {schema: Problem}}}
        409: {description: the candidate is the active version, content: {application/problem+json: {schema: Problem}}}
        422: {description: the candidate does not compile, content: {application/problem+json: {schema: Problem}}}
    """
    payload = read_json()
    if not isinstance(payload, dict):
        raise invalid([{"path": "$", "message": "the body must be a JSON object"}])
    try:
        body = _request.load(payload)
    except ValidationError as err:
        raise invalid(error_paths(err)) from None
    try:
        return jsonify(rollout.start(_rt(), flow, body["mode"], actor=g.api_key_id, share=body["share"],
                                     version_id=body["version_id"]))
    except RulesetError as exc:
        raise rules_invalid(exc, "nothing was started; the active version keeps serving") from None


@bp.delete("/v1/rollouts/<flow>")
@require("author")
def abort(flow):
    """Stop the candidate; the active version is untouched.
    ---
    delete:
      summary: Abort the candidate
      parameters: [{name: flow, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: the rollout as GET shows it}
        404: {description: no such flow, content: {application/problem+json: {schema: Problem}}}
        409: {description: no candidate runs, content: {application/problem+json: {schema: Problem}}}
    """
    return jsonify(rollout.abort(_rt(), flow, actor=g.api_key_id))


@bp.post("/v1/rollouts/<flow>/promote")
@require("admin")
def promote(flow):
    """Make the candidate the active version on every worker (not by the key that started it).
    ---
    post:
      summary: Promote the candidate
      parameters: [{name: flow, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: the rollout as GET shows it}
        403: {description: the key lacks the admin scope or started this candidate, content: {application/problem+json: {schema: Problem}}}
        404: {description: no such flow, content: {application/problem+json: {schema: Problem}}}
        409: {description: no candidate runs, content: {application/problem+json: {schema: Problem}}}
    """
    return jsonify(rollout.promote(_rt(), flow, actor=g.api_key_id))


@bp.post("/v1/rollouts/<flow>/rollback")
@require("admin")
def rollback(flow):
    """Activate the version that was active before the live one again; clear any candidate.
    ---
    post:
      summary: Roll back
      parameters: [{name: flow, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: the rollout as GET shows it}
        404: {description: no such flow, content: {application/problem+json: {schema: Problem}}}
        409: {description: the flow has had one version only, content: {application/problem+json: {schema: Problem}}}
    """
    return jsonify(rollout.rollback(_rt(), flow, actor=g.api_key_id))
