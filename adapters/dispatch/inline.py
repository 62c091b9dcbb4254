"""Inline dispatch: run a just-recorded decision's ready steps before the response, within a
time budget (POSTSALE_INLINE_DISPATCH_MS), and leave whatever is left to `postsale worker`.

The HTTP process keeps one Dispatcher per Runtime (its own circuit breakers; the rate limits
and contact counters are shared through Redis when the runtime has it). Building it reads
the tool catalog and the contact policy; if either does not load, inline dispatch logs the
problem and steps aside (the rows wait for the workers, which refuse to start on it).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref

log = logging.getLogger("postsale.dispatch")

_by_runtime: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_by_id: dict = {}
_failed: dict = {}
_lock = threading.Lock()
RETRY_BUILD_SECONDS = 60.0


def _build(runtime):
    from adapters.tools.registry import build_registry

    from .contact import load_contact_policy
    from .dispatcher import Dispatcher
    registry = build_registry(session_factory=runtime.factory)
    try:
        policy = load_contact_policy()
    except Exception:
        registry.close()
        raise
    return Dispatcher(runtime.factory, registry, redis=getattr(runtime, "redis", None), contact_policy=policy,
                      actor="dispatcher:inline")


def dispatcher_for(runtime):
    """The runtime's Dispatcher, built on first use (None when the catalog or policy does not load)."""
    given = getattr(runtime, "dispatcher", None)
    if given is not None:
        return given
    with _lock:
        try:
            d = _by_runtime.get(runtime)
        except TypeError:  # not weak-referenceable
            d = _by_id.get(id(runtime))
        if d is not None:
            return d
        failed_at = _failed.get(id(runtime))
        if failed_at is not None and time.monotonic() - failed_at < RETRY_BUILD_SECONDS:
            return None
        try:
            d = _build(runtime)
        except Exception as exc:  # noqa: BLE001 - the decision is recorded; workers will act
            _failed[id(runtime)] = time.monotonic()
            log.error("inline dispatch unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None
        _failed.pop(id(runtime), None)
        try:
            _by_runtime[runtime] = d
            weakref.finalize(runtime, d.close)
        except TypeError:
            _by_id[id(runtime)] = d
        return d


def dispatch_decision(runtime, decision_id: str, budget_seconds: float) -> list[dict]:
    """Run `decision_id`'s ready steps within `budget_seconds`; the state of each of its rows
    ([{id, step, type, state, attempts, idempotency_key}]), or [] when dispatch is unavailable."""
    d = dispatcher_for(runtime)
    if d is None:
        return []
    return d.run_decision(decision_id, budget_seconds)


def dispatch_inline(runtime, decision_id: str, budget_seconds: float, body: dict, idempotency_key=None) -> None:
    """For POST /v1/decisions: dispatch, then write each action's state into the response body
    (`actions[i].status`: done, retry, dead, suppressed, ... or still ready) and into the stored
    idempotent response, so a replay answers the same. Never raises: the decision is recorded."""
    actions = body.get("actions") or []
    if not any(a.get("status") == "ready" for a in actions):
        return
    try:
        states = dispatch_decision(runtime, decision_id, budget_seconds)
    except Exception:  # noqa: BLE001
        log.exception("inline dispatch of decision %s failed; the workers will run it", decision_id)
        return
    by_step = {s["step"]: s["state"] for s in states}
    changed = False
    for a in actions:
        state = by_step.get(a.get("step"))
        if state is not None and state != a.get("status"):
            a["status"] = state
            changed = True
    if changed and idempotency_key is not None:
        try:
            _restore(runtime.factory, idempotency_key, body)
        except Exception:  # noqa: BLE001 - a replay then shows the states at record time
            log.warning("could not update the stored response of decision %s", decision_id)


def _restore(factory, key: str, body: dict) -> None:
    from adapters.store.db import transaction
    from adapters.store.models import IdempotencyKey
    with transaction(factory) as s:
        row = s.get(IdempotencyKey, key)
        if row is not None:
            row.response_body = dict(body)


__all__ = ["dispatch_decision", "dispatch_inline", "dispatcher_for"]
