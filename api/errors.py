"""Every error leaves as application/problem+json (RFC 9457); nothing leaks a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, Response, current_app, json
from werkzeug.exceptions import HTTPException

from adapters.store.db import unavailable
from service.errors import (Conflict, DecisionFailed, Forbidden, IdempotencyMismatch, InvalidRequest, NotFound,
                            ServiceError, Unavailable)

log = logging.getLogger("postsale.api")

TYPES = "https://postsale.dev/problems/"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", type_: str = "about:blank",
                 retry_after: int | None = None, **extra):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.type, self.extra = status, title, detail, type_, extra
        self.retry_after = retry_after

    def body(self) -> dict:
        out = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        out.update(self.extra)
        return out


def problem_response(p: Problem) -> Response:
    from adapters import metrics
    metrics.ERRORS.labels(_kind(p)).inc()
    resp = Response(json.dumps(p.body()), status=p.status, mimetype="application/problem+json")
    if p.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="postsale"'
    if p.retry_after is not None:
        resp.headers["Retry-After"] = str(p.retry_after)
    return resp


RETRY_AFTER_SECONDS = 2


def database_unavailable() -> Problem:
    """503: the database is away; the request can be sent again (with its Idempotency-Key)."""
    return Problem(503, "Database unavailable", "the database cannot be reached now; send the request again "
                   "(with the same Idempotency-Key) after Retry-After seconds", TYPES + "database-unavailable",
                   retry_after=RETRY_AFTER_SECONDS)


def _kind(p: Problem) -> str:
    if p.status == 503:
        return "unavailable"
    if p.status >= 500:
        return "internal"
    return {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large", 429: "rate_limited",
            422: p.type.rsplit("/", 1)[-1] if p.type.startswith(TYPES) else "unprocessable"}.get(p.status, str(p.status))


def invalid(errors: list[dict], detail: str = "the request has problems; every one is listed in 'errors'") -> Problem:
    """400 with every problem by JSON path: [{"path": "$.facts.account.arr", "message": ...}]."""
    return Problem(400, "Invalid request", detail, TYPES + "invalid-request", errors=errors)


def from_service(exc: ServiceError) -> Problem:
    """The use cases' refusals (service/errors.py) as HTTP problems."""
    if isinstance(exc, InvalidRequest):
        return invalid(exc.problems, *([exc.detail] if exc.detail else []))
    if isinstance(exc, IdempotencyMismatch):
        return Problem(422, "Idempotency key reused", str(exc), TYPES + "idempotency-mismatch",
                       errors=[{"path": "header.Idempotency-Key", "message": str(exc)}])
    if isinstance(exc, DecisionFailed):
        return Problem(422, "The rules could not decide", str(exc), TYPES + "decision-failed", code=exc.code)
    if isinstance(exc, Unavailable):
        return Problem(503, exc.title, str(exc), TYPES + exc.kind,
                       retry_after=RETRY_AFTER_SECONDS if exc.kind == "rules-unavailable" else None)
    if isinstance(exc, Conflict):
        return Problem(409, exc.title, str(exc), TYPES + exc.kind)
    if isinstance(exc, Forbidden):
        return Problem(403, "Forbidden", str(exc))
    if isinstance(exc, NotFound):
        return Problem(404, "Not found", str(exc))
    return Problem(500, "Internal error", "the error was logged with this request's id")


def init_app(app: Flask) -> None:
    app.register_error_handler(Problem, problem_response)
    app.register_error_handler(ServiceError, lambda exc: problem_response(from_service(exc)))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        titles = {413: "Request body too large", 404: "Not found", 405: "Method not allowed"}
        detail = exc.description or ""
        limit = current_app.config.get("MAX_CONTENT_LENGTH") if exc.code == 413 else None
        if limit:
            detail = f"the body is larger than this service takes ({limit:,} bytes, {limit // 1024:,} KiB)"
        return problem_response(Problem(exc.code or 500, titles.get(exc.code, exc.name), detail))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if unavailable(exc):
            log.warning("database unavailable", exc_info=exc)
            return problem_response(database_unavailable())
        log.exception("unhandled error")
        return problem_response(Problem(500, "Internal error", "the error was logged with this request's id"))
