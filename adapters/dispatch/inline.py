"""Inline dispatch: run a just-recorded decision's ready steps before the response, within a
time budget (POSTSALE_INLINE_DISPATCH_MS), and leave whatever is left to `postsale worker`.

The runtime owns one Dispatcher (its own circuit breakers; the rate limits and contact
counters are shared through Redis when there is one), built by `build_dispatcher` on first use.
"""
from __future__ import annotations

import logging

log = logging.getLogger("postsale.dispatch")


def build_dispatcher(factory, redis=None, settings=None):
    """The Dispatcher over the tool catalog and the contact policy; raises when either does not load."""
    from adapters.tools.registry import build_registry

    from .contact import load_contact_policy
    from .dispatcher import Dispatcher
    registry = build_registry(getattr(settings, "tools_file", None), session_factory=factory)
    try:
        policy = load_contact_policy(getattr(settings, "contact_policy_file", None))
    except Exception:
        registry.close()
        raise
    # a request never sleeps for a rate-limit token: a throttled step is deferred to the workers
    return Dispatcher(factory, registry, redis=redis, contact_policy=policy, actor="dispatcher:inline",
                      max_rate_wait=0.0)


def dispatch_decision(dispatcher, decision_id: str, budget_seconds: float, first_action: str | None = None,
                      last_step: int | None = None) -> list[dict]:
    """Run `decision_id`'s ready steps within `budget_seconds`; the state of each of its rows
    ([{id, step, type, state, attempts, idempotency_key}]), or [] without a dispatcher or when
    nothing ran (Dispatcher.run_decision's `first_action` and `last_step`)."""
    if dispatcher is None:
        return []
    return dispatcher.run_decision(decision_id, budget_seconds, first_action, last_step)


def dispatch_inline(dispatcher, factory, decision_id: str, budget_seconds: float, body: dict,
                    idempotency_key=None, recorded: tuple | None = None) -> None:
    """Dispatch, then write each action's state into `body` (`actions[i].status`: done, retry,
    dead, suppressed, ... or still ready) and into the stored idempotent response, so a replay
    answers the same. `recorded` is what the decision holds — (result, account, traceparent) —
    when the caller has just written it. Never raises: the decision is recorded."""
    actions = body.get("actions") or []
    first = min(actions, key=lambda a: a.get("step") or 0, default=None)
    if first is None or first.get("status") != "ready":
        return  # the first step waits for an approval: nothing can run yet
    try:
        if dispatcher is not None and recorded is not None:
            dispatcher.remember(decision_id, *recorded)
        states = dispatch_decision(dispatcher, decision_id, budget_seconds, first.get("type"),
                                   max(a.get("step") or 0 for a in actions))
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
            _restore(factory, idempotency_key, body)
        except Exception:  # noqa: BLE001 - a replay then shows the states at record time
            log.warning("could not update the stored response of decision %s", decision_id)


def _restore(factory, key: str, body: dict) -> None:
    from adapters.store.db import transaction
    from adapters.store.models import IdempotencyKey
    with transaction(factory) as s:
        row = s.get(IdempotencyKey, key)
        if row is not None:
            row.response_body = dict(body)


__all__ = ["build_dispatcher", "dispatch_decision", "dispatch_inline"]
