"""The adapter contract and its error hierarchy, drawn in one place (httpx style).

    ToolError                    every failure an adapter reports on purpose
    ├── ToolTimeout              no answer in time (the action may or may not have happened)  retryable
    ├── ToolUnavailable          5xx, 409/425, connection refused/reset, garbled response      retryable
    │   └── ToolBadResponse      a 2xx whose body is not the JSON object we expect              retryable
    ├── ToolRateLimited          429, with retry_after (seconds) from Retry-After               retryable
    ├── ToolRejected             4xx other than 408/409/425/429: the tool said no                not retryable
    ├── ActionNotGranted         the catalog does not grant the action; raised before any call  not retryable
    ├── NoCompensation           compensate() for an action that declares no compensating one   not retryable
    └── ToolMisconfigured        the credential is missing or unreadable at call time            not retryable

Every error carries `tool`, `action`, `retryable` and `retry_after` (seconds or None), so the
dispatcher decides with `err.retryable` alone and waits at least `err.retry_after` when set.
A retry of one planned action must carry the same idempotency key: the tool deduplicates on
it, so a timeout followed by a retry never doubles the side effect.

The contract (`Adapter`) is small: `perform(action, params, idempotency_key) -> ToolResult`
and `compensate(action, reference, idempotency_key, params=None) -> ToolResult`. The base
class checks the grant before anything else, times the call and hands one record per call to
an `AuditSink` (tool, action, key, outcome, duration; never params, responses or secrets).
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

from adapters import telemetry

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import ToolSpec

log = logging.getLogger("postsale.adapters")


# --------------------------------------------------------------------------- errors

class ToolError(Exception):
    """Root of every error an adapter raises on purpose."""

    retryable = False

    def __init__(self, message: str, *, tool: str | None = None, action: str | None = None,
                 retry_after: float | None = None):
        self.tool = tool
        self.action = action
        self.retry_after = retry_after
        super().__init__(message)

    @property
    def outcome(self) -> str:
        """The audit outcome: the error's kind in snake case (tool_timeout, tool_rejected, ...)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()


class ToolTimeout(ToolError):
    """No answer within the catalog's timeout. `phase` is connect, read, write or pool; only a
    connect timeout proves the request never reached the tool."""

    retryable = True

    def __init__(self, message: str, *, phase: str = "read", **kw):
        self.phase = phase
        super().__init__(message, **kw)


class ToolUnavailable(ToolError):
    """The tool could not take the request now: 5xx, 409 (same key still in flight), 425,
    connection refused or reset. `status` is None when there was no HTTP answer."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, **kw):
        self.status = status
        super().__init__(message, **kw)


class ToolBadResponse(ToolUnavailable):
    """A success status with a body that is not a JSON object. The action probably happened;
    retrying with the same key lets the tool answer again from its idempotency record."""


class ToolRateLimited(ToolError):
    """429 Too Many Requests; `retry_after` seconds from Retry-After when the tool sent one."""

    retryable = True

    def __init__(self, message: str, *, status: int = 429, **kw):
        self.status = status
        super().__init__(message, **kw)


class ToolRejected(ToolError):
    """The tool refused the request (4xx): retrying the same request cannot succeed.
    `reason` is the tool's own explanation, kept out of the audit trail (it may quote data)."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, reason: str = "", **kw):
        self.status = status
        self.reason = reason
        super().__init__(message, **kw)


class ActionNotGranted(ToolError):
    """Least privilege: the tool's grant in the catalog does not include the action."""


class NoCompensation(ToolError):
    """compensate() was asked for an action whose catalog entry declares no compensating action."""


class ToolMisconfigured(ToolError):
    """The tool cannot be called as configured (credential unset or unreadable)."""


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class ToolResult:
    """What a tool answered. `reference` is the external id (quote id, task id, case number)
    a compensation needs later; `data` is the tool's response object; `replayed` is true when
    the tool answered from its idempotency record (the side effect happened on an earlier call)."""

    tool: str
    action: str
    idempotency_key: str
    reference: str | None = None
    data: dict = field(default_factory=dict)
    replayed: bool = False
    status: int | None = None

    def to_json(self) -> dict:
        return {"tool": self.tool, "action": self.action, "idempotency_key": self.idempotency_key,
                "reference": self.reference, "data": self.data, "replayed": self.replayed, "status": self.status}


# --------------------------------------------------------------------------- audit

@dataclass(frozen=True)
class CallRecord:
    """One adapter call as the audit trail sees it. Deliberately no params, no response data,
    no error text and no headers: those can hold personal data or secrets."""

    tool: str
    action: str
    idempotency_key: str
    adapter: str
    outcome: str  # ok | replayed | tool_timeout | tool_unavailable | ... | action_not_granted
    duration_ms: float
    retryable: bool | None = None
    status: int | None = None
    reference: str | None = None
    compensates: str | None = None  # for a compensation: the action it undoes

    def detail(self) -> dict:
        d = {"tool": self.tool, "action": self.action, "idempotency_key": self.idempotency_key,
             "adapter": self.adapter, "outcome": self.outcome, "duration_ms": self.duration_ms}
        for k in ("retryable", "status", "reference", "compensates"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


class AuditSink(Protocol):
    def record(self, call: CallRecord) -> None: ...


class MemoryAuditSink:
    """Keeps the records in a list (tests, dry runs)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.records.append(call)


class NullAuditSink:
    def record(self, call: CallRecord) -> None:
        pass


class DatabaseAuditSink:
    """Writes each call as an audit_log row (kind `tool.call`, subject the idempotency key, so
    the row joins to its outbox row), in its own short transaction — or, inside `held()`, in the
    transaction the caller writes next (the dispatcher's step transition), so a call and the
    state it explains commit together, one transaction fewer per call."""

    kind = "tool.call"

    def __init__(self, session_factory, actor: str = "dispatcher"):
        self.factory = session_factory
        self.actor = actor
        self._local = threading.local()

    def record(self, call: CallRecord) -> None:
        held = getattr(self._local, "calls", None)
        if held is not None:
            held.append(call)
            return
        from adapters.store.db import transaction
        with transaction(self.factory) as s:
            self.write(s, [call])

    def write(self, s, calls) -> None:
        from adapters.store.decisions import audit
        for call in calls:
            audit(s, self.actor, self.kind, call.idempotency_key, call.detail())

    @contextmanager
    def held(self):
        """Calls recorded by this thread inside are kept in the list yielded; the caller writes
        them into its transaction (`write`) and empties the list once that commits. Whatever is
        left on exit (the caller's transaction failed) is written on its own."""
        self._local.calls = calls = []
        try:
            yield calls
        finally:
            self._local.calls = None
            if calls:
                try:
                    for call in calls:
                        self.record(call)
                except Exception:  # noqa: BLE001 - the audit never changes a call's outcome
                    log.exception("audit of %d held tool call(s) failed", len(calls))


# --------------------------------------------------------------------------- the contract

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def compensation_key(idempotency_key: str) -> str:
    """The idempotency key for undoing the action that carried `idempotency_key`: stable, so a
    retried compensation is deduplicated like any other call."""
    return hashlib.sha256(f"{idempotency_key}:compensate".encode()).hexdigest()[:40]


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds to wait: delta-seconds ("120") or an HTTP-date
    ("Wed, 21 Oct 2015 07:28:00 GMT"). A date in the past means 0; garbage means None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class Adapter:
    """One external tool. Subclasses implement `_call(spec_action, params, key, reference)`;
    this class owns the grant check, timing and audit, so every implementation behaves the same."""

    kind = "abstract"

    def __init__(self, spec: "ToolSpec", audit: AuditSink | None = None):
        self.spec = spec
        self.audit = audit or NullAuditSink()

    # -- what the dispatcher reads
    @property
    def tool(self) -> str:
        return self.spec.name

    @property
    def retry(self):
        """The catalog's RetryPolicy for this tool (the dispatcher owns retries)."""
        return self.spec.retry

    @property
    def rate_limit(self):
        return self.spec.rate_limit

    @property
    def timeout(self) -> float:
        return self.spec.timeout_seconds

    def grants(self, action: str) -> bool:
        return action in self.spec.actions

    def compensation_for(self, action: str) -> str | None:
        a = self.spec.actions.get(action)
        return a.compensation if a else None

    # -- the contract
    def perform(self, action: str, params: dict, idempotency_key: str) -> ToolResult:
        """Do `action` once; the same key again must not do it twice."""
        return self._run(action, dict(params or {}), idempotency_key, reference=None, compensates=None)

    def compensate(self, action: str, reference: str | None, idempotency_key: str,
                   params: dict | None = None) -> ToolResult:
        """Undo `action` (the action that was performed, e.g. create_quote) by its declared
        compensating action (void_quote) on the object `reference` (the quote id).
        `idempotency_key` is the compensation's own key: use compensation_key(original key)."""
        started = time.perf_counter()
        undo = self.compensation_for(action)
        if undo is None:
            err = (ActionNotGranted(f"{self.tool} does not grant '{action}'", tool=self.tool, action=action)
                   if not self.grants(action) else
                   NoCompensation(f"{self.tool}.{action} declares no compensating action", tool=self.tool,
                                  action=action))
            self._audit(action, idempotency_key, err.outcome, started, error=err)
            raise err
        return self._run(undo, dict(params or {}), idempotency_key, reference=reference, compensates=action)

    def close(self) -> None:
        pass

    # -- the shared path
    def _run(self, action, params, key, *, reference, compensates) -> ToolResult:
        with telemetry.tracer("postsale.tools").start_as_current_span(
                f"tool {self.tool}.{action}", kind=telemetry.SpanKind.CLIENT,
                attributes={"postsale.tool": self.tool, "postsale.action": action, "postsale.adapter": self.kind,
                            "postsale.compensates": compensates or ""}) as span:
            try:
                result = self._run_once(action, params, key, reference=reference, compensates=compensates)
            except ToolError as err:
                span.set_attribute("postsale.outcome", err.outcome)
                span.set_status(telemetry.Status(telemetry.StatusCode.ERROR, str(err)[:200]))
                raise
            span.set_attribute("postsale.outcome", "replayed" if result.replayed else "ok")
            return result

    def _run_once(self, action, params, key, *, reference, compensates) -> ToolResult:
        started = time.perf_counter()
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError("idempotency key must be 1-255 printable ASCII characters without spaces")
        if not self.grants(action):
            err = ActionNotGranted(f"{self.tool} does not grant '{action}' (granted: "
                                   f"{', '.join(sorted(self.spec.actions))})", tool=self.tool, action=action)
            self._audit(action, key, err.outcome, started, error=err, compensates=compensates)
            raise err
        try:
            result = self._call(self.spec.actions[action], params, key, reference)
        except ToolError as err:
            err.tool = err.tool or self.tool
            err.action = err.action or action
            self._audit(action, key, err.outcome, started, error=err, compensates=compensates)
            raise
        self._audit(action, key, "replayed" if result.replayed else "ok", started, result=result,
                    compensates=compensates)
        return result

    def _call(self, spec_action, params: dict, key: str, reference: str | None) -> ToolResult:
        raise NotImplementedError

    def _audit(self, action, key, outcome, started, *, error=None, result=None, compensates=None) -> None:
        call = CallRecord(
            tool=self.tool, action=action, idempotency_key=key, adapter=self.kind, outcome=outcome,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            retryable=error.retryable if error is not None else None,
            status=(getattr(error, "status", None) if error is not None else result.status),
            reference=result.reference if result is not None else None,
            compensates=compensates)
        try:
            self.audit.record(call)
        except Exception:  # noqa: BLE001 - the audit never changes a call's outcome
            log.exception("audit of %s.%s (key %s) failed", self.tool, action, key)
