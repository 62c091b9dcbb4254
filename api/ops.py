"""Operations: liveness, readiness, Prometheus metrics and the OpenAPI document (its browsable
reference is api/reference.py)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from adapters.store.db import ping

from adapters import metrics

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "alive"})


@bp.get("/readyz")
def readyz():
    """503 when this process cannot decide (database, rules, triggers); a Redis that is away
    only degrades it (caches bypassed, rate limits per process), so it stays 200 and says so."""
    rt = current_app.extensions["postsale"]
    db_ok = ping(rt.db)
    rules_ok = bool(rt.deciders)
    try:
        triggers = rt.events.triggers
        triggers_state = f"{len(triggers.triggers)} loaded" if triggers is not None else "none"
        triggers_ok = True
    except Exception:  # noqa: BLE001 - reported, not raised: the problems are in the log and `postsale triggers check`
        triggers_state, triggers_ok = "do not load", False
    redis = rt.idempotency.guard.check()
    ready = db_ok and rules_ok and triggers_ok
    body = {"status": ("degraded" if redis == "down" else "ready") if ready else "unavailable",
            "database": "ok" if db_ok else "unreachable", "redis": redis,
            "rules": "loaded" if rules_ok else "not loaded", "triggers": triggers_state,
            "flows": {name: d.flow.version for name, d in sorted(rt.deciders.items())}}
    return jsonify(body), (200 if ready else 503)


@bp.get("/metrics")
def prometheus():
    metrics.update_drift(current_app.extensions["postsale"].scoring)
    data, ctype = metrics.render()
    return Response(data, mimetype=ctype.split(";")[0], headers={"Content-Type": ctype})


@bp.get("/openapi.json")
def openapi():
    return jsonify(current_app.extensions["postsale.openapi"])
