"""The recorded ruleset versions: each flow's history (newest first) and a version's sources,
for the console's rulesets page, the diff between two versions, replays and approvals."""
from __future__ import annotations

import difflib

from sqlalchemy import select

from .db import iso
from .models import Rollout, RulesetVersion


def history(factory, limit: int = 200) -> dict[str, list[dict]]:
    """Per flow, its activated versions newest first (the first is the live one)."""
    with factory() as s:
        rows = s.execute(select(RulesetVersion.id, RulesetVersion.flow, RulesetVersion.version, RulesetVersion.actor,
                                RulesetVersion.created_at).order_by(RulesetVersion.id.desc()).limit(limit)).all()
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.flow, []).append({"id": r.id, "version": r.version, "actor": r.actor,
                                           "created_at": iso(r.created_at)})
    return dict(sorted(out.items()))


def sources(factory, row_id: int) -> dict | None:
    with factory() as s:
        r = s.get(RulesetVersion, row_id)
        return None if r is None else {"flow": r.flow, "version": r.version, "sources": dict(r.sources or {})}


def sources_of(session, flow: str, version: str) -> dict | None:
    """The sources of a flow's version a decision was made with: an activated version, or a
    rollout candidate's (a canary decides with a version that may never be activated)."""
    for model, only in ((RulesetVersion, ()), (Rollout, (Rollout.step == "start",))):
        found = session.scalars(select(model.sources).where(model.flow == flow, model.version == version, *only)
                                .order_by(model.id.desc()).limit(1)).first()
        if found is not None:
            return dict(found)
    return None


def diff(old: dict, new: dict) -> list[dict]:
    """Unified diffs, file by file, of two versions' sources ({path: text}); unchanged files left out."""
    out = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        lines = list(difflib.unified_diff((a or "").splitlines(), (b or "").splitlines(),
                                          f"a/{path}" if a is not None else "/dev/null",
                                          f"b/{path}" if b is not None else "/dev/null", lineterm=""))
        out.append({"path": path, "change": "added" if a is None else "removed" if b is None else "changed",
                    "lines": lines})
    return out
