"""Rolling out a ruleset version: a candidate runs beside the active version, then is promoted
or rolled back — for the API and the CLI alike.

    start     the candidate (the rules on disk, or a recorded version) in one of two modes:
              shadow  every decision is decided by the candidate too; its plan is recorded with
                      the decision and compared, never acted on
              canary  a stable share of accounts (hash of the account id, salted apart from the
                      holdout) is decided by the candidate; the decision records its version
    promote   the candidate becomes the active version
    rollback  the version active before the live one is active again; any candidate is cleared
    abort     the candidate is cleared; the active version stays

Every step is a row in `rollouts` (and a new ruleset_versions row for promote and rollback) and
an audit entry, written in one transaction, then announced the way an activation is
(service/runtime.py): every process on every host adopts it within reload_poll_seconds, at once
with Redis. Segregation of duties: the key that started a candidate cannot promote it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from adapters import metrics
from adapters.store import rollouts as store
from adapters.store.db import iso, now, transaction
from adapters.store.decisions import audit
from adapters.store.models import RulesetVersion
from engine.explore import in_share

from .errors import Conflict, Forbidden, InvalidRequest, NotFound

log = logging.getLogger("postsale.rollout")
MODES = ("shadow", "canary")


@dataclass(frozen=True)
class Candidate:
    """A running candidate as a process serves it: the start step and the candidate's engine."""
    rollout_id: int
    flow: str
    mode: str
    share: float
    version: str
    decider: object
    salt: str

    def serves(self, account_id) -> bool:
        """Canary: whether this account is decided by the candidate (stable per account)."""
        return self.mode == "canary" and in_share(self.salt, "canary:" + self.flow, account_id, self.share)


def shadow(candidate: Candidate, facts: dict, result: dict, capacity, at) -> dict:
    """The decision's shadow columns: the candidate decides the same facts without claiming or
    observing anything; a candidate that fails is recorded as a change with its error."""
    from adapters.store.capacity import DeferredCapacity
    view = DeferredCapacity(capacity.capacity, observe=False) if capacity is not None else None
    active = store.plan_of(result)
    try:
        theirs, _ = candidate.decider.decide_full(facts, claim=False, capacity=view, now=at)
        plan = store.plan_of(theirs)
    except Exception as exc:  # noqa: BLE001 - a candidate never fails a decision
        log.warning("shadow version %s of flow %s failed: %s", candidate.version, candidate.flow, exc)
        plan = {"error": f"{type(exc).__name__}: {exc}"}
    return {"shadow_version": candidate.version, "shadow_changed": plan != active, "shadow_plan": plan}


def counted(flow: str, recorded: dict | None) -> None:
    if recorded and recorded.get("shadow_version"):
        metrics.child(metrics.SHADOW, flow, "changed" if recorded["shadow_changed"] else "same").inc()


def _known(rt, flow: str, session) -> list[RulesetVersion]:
    history = store.versions(session, flow)
    if not history:
        raise NotFound(f"no flow '{flow}' is recorded; flows: {', '.join(sorted(rt.deciders)) or 'none'}")
    return history


def _candidate_sources(rt, flow: str, session, version_id) -> dict:
    if version_id is None:
        d = rt.flow_dirs().get(flow)
        if d is None:
            raise NotFound(f"no flow '{flow}' under {rt.settings.rules_dir}")
        from .runtime import read_sources
        return read_sources(d)
    row = session.get(RulesetVersion, version_id)
    if row is None or row.flow != flow:
        raise NotFound(f"no recorded version {version_id} of flow '{flow}'")
    return dict(row.sources)


def start(rt, flow: str, mode: str, *, actor: str | None, share: float | None = None, version_id=None) -> dict:
    """Run a candidate (the rules on disk, or the recorded version `version_id`) for `flow`;
    a running candidate is replaced. RulesetError when it does not compile."""
    problems = []
    if mode not in MODES:
        problems.append({"path": "$.mode", "message": f"is '{mode}'; modes: {', '.join(MODES)}"})
    if mode == "canary" and not (isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share <= 1):
        problems.append({"path": "$.share", "message": "a canary needs a share of accounts in (0, 1]"})
    if mode == "shadow" and share is not None:
        problems.append({"path": "$.share", "message": "a shadow decides every decision; it takes no share"})
    if problems:
        raise InvalidRequest(problems)
    from engine.decide import Decider
    from engine.language.flows import Sources, load_flow
    with rt.factory() as s:
        live = _known(rt, flow, s)[0]
        sources = _candidate_sources(rt, flow, s, version_id)
    candidate = load_flow(Sources(f"rules/{flow}", sources))
    Decider(candidate, "reference", responses=rt.responses)
    if candidate.version == live.version:
        raise Conflict("Nothing to roll out", f"version {live.version} is already active for flow '{flow}'",
                       "rollout-unchanged")
    with transaction(rt.factory) as s:
        row = store.add(s, flow, store.START, actor, mode=mode, share=float(share) if share is not None else None,
                        version=candidate.version, sources=sources)
        audit(s, actor, "rollout.started", flow, {"rollout": row.id, "mode": mode, "share": row.share,
                                                  "version": candidate.version, "active": live.version,
                                                  "from_version_id": version_id})
    rt.announce()
    return status(rt, flow)


def _running(s, flow: str):
    start_row = store.running(s).get(flow)
    if start_row is None:
        raise Conflict("No candidate", f"flow '{flow}' has no candidate running; start one first", "rollout-none")
    return start_row


def promote(rt, flow: str, *, actor: str | None) -> dict:
    """The candidate becomes the active version; Forbidden for the key that started it."""
    with transaction(rt.factory) as s:
        live = _known(rt, flow, s)[0]
        started = _running(s, flow)
        if actor is not None and started.actor == actor:
            raise Forbidden(f"'{actor}' started this candidate; someone else (a key with the admin scope) promotes it")
        s.add(RulesetVersion(flow=flow, version=started.version, sources=started.sources, actor=actor, created_at=now()))
        row = store.add(s, flow, store.PROMOTE, actor, mode=started.mode, version=started.version)
        audit(s, actor, "rollout.promoted", flow, {"rollout": row.id, "version": started.version,
                                                   "previous": live.version, "proposed_by": started.actor})
    rt.announce()
    return status(rt, flow)


def rollback(rt, flow: str, *, actor: str | None) -> dict:
    """The version active before the live one is active again (a new activation of its
    sources); any candidate is cleared. One call, on every worker within the poll bound; a
    second rollback in a row is refused (it would undo the first)."""
    with transaction(rt.factory) as s:
        history = _known(rt, flow, s)
        live = history[0]
        last = store.newest(s, flow)
        if last is not None and last.step == store.ROLLBACK and last.version == live.version \
                and live.created_at <= last.created_at:
            raise Conflict("Already rolled back", f"flow '{flow}' was rolled back to {live.version}; a second "
                           "rollback would bring back what was rolled back: start it as a candidate instead",
                           "rollback-repeated")
        previous = next((v for v in history if v.version != live.version), None)
        if previous is None:
            raise Conflict("Nothing to roll back to", f"flow '{flow}' has had one version only ({live.version})",
                           "rollback-none")
        cleared = store.running(s).get(flow)
        s.add(RulesetVersion(flow=flow, version=previous.version, sources=previous.sources, actor=actor,
                             created_at=now()))
        row = store.add(s, flow, store.ROLLBACK, actor, version=previous.version)
        audit(s, actor, "rollout.rolled_back", flow, {"rollout": row.id, "version": previous.version,
                                                      "from": live.version,
                                                      "cleared": cleared.version if cleared else None})
    rt.announce()
    return status(rt, flow)


def abort(rt, flow: str, *, actor: str | None) -> dict:
    """The candidate stops; the active version is untouched."""
    with transaction(rt.factory) as s:
        _known(rt, flow, s)
        started = _running(s, flow)
        row = store.add(s, flow, store.ABORT, actor, mode=started.mode, version=started.version)
        audit(s, actor, "rollout.aborted", flow, {"rollout": row.id, "version": started.version})
    rt.announce()
    return status(rt, flow)


def status(rt, flow: str) -> dict:
    """The active version, the candidate (if one runs) with what it did since it started, and
    the latest steps — read from the database, the same from any worker."""
    with rt.factory() as s:
        live = _known(rt, flow, s)[0]
        started = store.running(s).get(flow)
        out = {"flow": flow, "active": {"version": live.version, "id": live.id, "since": iso(live.created_at),
                                        "actor": live.actor},
               "candidate": None, "steps": store.steps(s, flow)}
        if started is not None:
            out["candidate"] = {"version": started.version, "mode": started.mode, "share": started.share,
                                "actor": started.actor, "since": iso(started.created_at), "rollout": started.id,
                                **store.observed(s, started)}
    return out


__all__ = ["Candidate", "MODES", "abort", "counted", "promote", "rollback", "shadow", "start", "status"]
