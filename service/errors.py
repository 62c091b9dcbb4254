"""What a use case can refuse, as types the callers map: the API to HTTP problems, the
evaluator to audit entries, the CLI to exit codes.

    ServiceError
    ├── InvalidRequest          every problem by JSON path ($.facts.account.arr, $.flow, ...)
    ├── IdempotencyMismatch     the key was used with another request body
    ├── DecisionFailed          the rules could not decide (a table's unique hit policy, ...)
    ├── Unavailable             a part the request needs does not load (e.g. the triggers)
    ├── Conflict                the step does not fit the current state (no candidate to promote)
    ├── Forbidden               the caller may not take the step (promoting their own proposal)
    └── NotFound                no such flow or version
"""
from __future__ import annotations


class ServiceError(Exception):
    """The root: every refusal of a use case."""


class InvalidRequest(ServiceError):
    """`problems`: [{path, message}] sorted by path; `facts`: the facts did not fit the flow's
    schema (the problems are the schema's, with paths relative to the facts as `raw`)."""

    def __init__(self, problems: list[dict], detail: str | None = None, raw=None):
        super().__init__(detail or "; ".join(f"{p['path']}: {p['message']}" for p in problems))
        self.problems = sorted(problems, key=lambda p: p["path"])
        self.detail = detail
        self.raw = raw or []


class IdempotencyMismatch(ServiceError):
    def __init__(self):
        super().__init__("this Idempotency-Key was used with a different request body")


class DecisionFailed(ServiceError):
    def __init__(self, message: str, code: str | None):
        super().__init__(message)
        self.code = code


class Unavailable(ServiceError):
    def __init__(self, title: str, detail: str, kind: str):
        super().__init__(detail)
        self.title, self.kind = title, kind


class Conflict(ServiceError):
    """The request does not fit the current state (no candidate to promote, nothing to roll back to)."""

    def __init__(self, title: str, detail: str, kind: str):
        super().__init__(detail)
        self.title, self.kind = title, kind


class Forbidden(ServiceError):
    """The caller may not take this step (segregation of duties: nobody promotes their own proposal)."""


class NotFound(ServiceError):
    pass


__all__ = ["ServiceError", "InvalidRequest", "IdempotencyMismatch", "DecisionFailed", "Unavailable", "Conflict",
           "Forbidden", "NotFound"]
