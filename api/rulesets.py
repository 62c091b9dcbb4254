"""GET /v1/rulesets, POST /v1/rulesets/reload (admin)."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify

from engine.errors import RulesetError
from engine.language.flows import flow_summary

from .auth import require
from .errors import Problem, TYPES

bp = Blueprint("rulesets", __name__)


@bp.get("/v1/rulesets")
@require("read")
def list_rulesets():
    """The flows this worker serves and their versions.
    ---
    get:
      summary: Loaded flows and versions
      responses:
        200: {description: flows}
    """
    rt = current_app.extensions["postsale"]
    rt.sync()
    return jsonify({"flows": [flow_summary(d.flow) for _, d in sorted(rt.deciders.items())],
                    "default_flow": rt.settings.default_flow})


@bp.get("/v1/models")
@require("read")
def list_models():
    """The selected scoring models, their evaluation figures and feature drift (PSI).
    ---
    get:
      summary: Models and drift
      responses:
        200: {description: models}
    """
    from adapters import metrics
    rt = current_app.extensions["postsale"]
    if rt.scoring is None:
        return jsonify({"models": [], "scoring": "off: scores come with the facts"})
    metrics.update_drift(rt.scoring)
    return jsonify({"models": rt.scoring.models()})


@bp.post("/v1/rulesets/reload")
@require("admin")
def reload():
    """Reload rules/ from disk; every worker and host converges on the new version.
    ---
    post:
      summary: Reload the rulesets
      responses:
        200: {description: the versions now live}
        422: {description: the new rules do not compile; the running version keeps serving, content: {application/problem+json: {schema: Problem}}}
    """
    rt = current_app.extensions["postsale"]
    try:
        changes = rt.reload(actor=g.api_key_id)
    except RulesetError as exc:
        raise rules_invalid(exc, "nothing was changed; the running version keeps serving") from None
    return jsonify({"flows": changes})


def rules_invalid(exc: RulesetError, detail: str) -> Problem:
    """422 listing every diagnostic of rules that do not compile."""
    return Problem(422, "The rules do not compile", detail, TYPES + "rules-invalid",
                   errors=[{"location": str(d.location), "code": d.code, "message": d.message}
                           for d in exc.diagnostics])
