"""The Flask application factory (Flask's tutorial convention: one `init_app` per part)."""
from __future__ import annotations

import logging
import secrets
import time

from flask import Flask, g, request

from adapters import telemetry
from config.settings import Settings, from_env

from . import errors, limits, logs


def create_app(settings: Settings | None = None, runtime=None) -> Flask:
    settings = settings or from_env()
    logs.configure(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    from .jsonio import FastJSONProvider
    app.json = FastJSONProvider(app)
    app.json.sort_keys = False
    errors.init_app(app)

    from .auth import KeyRing
    app.extensions["postsale.keys"] = KeyRing.from_settings(settings)
    if runtime is None:
        runtime = _runtime(settings)
    app.extensions["postsale"] = runtime
    from .ratelimit import RequestLimits
    app.extensions["postsale.limits"] = RequestLimits(settings.rate_limits, runtime.redis)

    from . import approvals, decisions, events, kpis, ops, outcomes, reference, rollouts, rulesets
    app.register_blueprint(decisions.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(outcomes.bp)
    app.register_blueprint(kpis.bp)
    app.register_blueprint(rulesets.bp)
    app.register_blueprint(rollouts.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(approvals.bp)
    app.register_blueprint(reference.bp)
    from . import console
    console.init_app(app, settings)
    from .openapi import build
    app.extensions["postsale.openapi"] = build(app)

    access = logging.getLogger("postsale.access")

    @app.before_request
    def _start():
        g.request_id = (request.headers.get("X-Request-Id") or "")[:128] or secrets.token_hex(8)
        g.started = time.perf_counter()
        # tracing off and no caller's trace to continue: the span would be the invalid one already current
        if telemetry.enabled() or telemetry.carries_context(request.headers):
            route = request.url_rule.rule if request.url_rule is not None else request.path
            span = telemetry.tracer("postsale.http").start_span(
                f"{request.method} {route}", context=telemetry.context_of(request.headers),
                kind=telemetry.SpanKind.SERVER,
                attributes={"http.request.method": request.method, "http.route": route, "url.path": request.path,
                            "postsale.request_id": g.request_id})
            g.span, g.span_token = span, telemetry.attach(telemetry.in_span(span))
        bad = limits.parameter_problems(request.view_args, request.args)
        if bad:
            raise errors.invalid(bad, "a path or query parameter cannot be used; every problem is listed in 'errors'")

    @app.after_request
    def _finish(resp):
        span = g.get("span")
        if span is not None:
            span.set_attribute("http.response.status_code", resp.status_code)
            if resp.status_code >= 500:
                span.set_status(telemetry.Status(telemetry.StatusCode.ERROR))
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        if request.path not in ("/healthz", "/metrics"):
            access.info("request", extra={"method": request.method, "path": request.path, "status": resp.status_code,
                                          "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
                                          "key_id": g.get("api_key_id")})
        return resp

    @app.teardown_request
    def _end_span(exc):
        span, token = g.pop("span", None), g.pop("span_token", None)
        if span is not None:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(telemetry.Status(telemetry.StatusCode.ERROR))
            span.end()
        if token is not None:
            telemetry.detach(token)

    return app


def _runtime(settings: Settings):
    """The serving runtime. A worker that starts while the database is away (respawned after a
    crash, recycled) still starts: it answers 503 until the watcher adopts the recorded rules."""
    from adapters.store.db import unavailable
    from service.bootstrap import bootstrap
    try:
        return bootstrap(settings, watch=True)
    except Exception as exc:
        if not unavailable(exc):
            raise
        logging.getLogger("postsale.api").warning("the database is away at start; serving 503 until it is back",
                                                  exc_info=exc)
        return bootstrap(settings, start=False, watch=True)
