"""Erasing a subject and retention: the use cases behind `postsale subject erase` and
`postsale retention run`. Which fact properties are personal is what each flow's facts schema
marks with `x-pii` (hash and keep: drop is never recorded); the rewriting, and how the audit
chain still verifies afterwards, is in adapters/store/erasure.py."""
from __future__ import annotations

import yaml

from adapters.store.erasure import erase_subject, retain
from engine.pii import marks


def personal_paths(rt) -> dict:
    """flow → the property paths its facts schema marks personal."""
    out = {}
    for name, folder in rt.flow_dirs().items():
        path = folder / "facts.schema.yaml"
        schema = yaml.safe_load(path.read_text()) if path.exists() else {}
        out[name] = [p for p, _mode in marks(schema)]
    return out


def erase(rt, account: str, actor: str | None = None) -> dict:
    paths = personal_paths(rt)
    key = (rt.settings.pii_key or "").encode()
    return erase_subject(rt.factory, account, lambda flow: paths.get(flow, []), key, actor)


class PolicyError(ValueError):
    """A retention policy that cannot be applied; the message names the file and the key."""


def retention_policy(path) -> dict:
    """{events_days, decision_facts_days} from config/retention.yaml; each a whole number ≥ 1."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from None
    problems = []
    for name in ("events_days", "decision_facts_days"):
        value = doc.get(name) if isinstance(doc, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{path}: {name}: {value!r} is not a whole number of days (1 or more)")
    if problems:
        raise PolicyError("; ".join(problems))
    return {name: doc[name] for name in ("events_days", "decision_facts_days")}


def run_retention(rt, actor: str | None = None, dry_run: bool = False, at=None) -> dict:
    from datetime import timedelta

    from adapters.store.db import now
    policy = retention_policy(rt.settings.retention_file)
    at = at or now()
    paths = personal_paths(rt)
    done = retain(rt.factory, at - timedelta(days=policy["events_days"]),
                  at - timedelta(days=policy["decision_facts_days"]), lambda flow: paths.get(flow, []),
                  (rt.settings.pii_key or "").encode(), actor, dry_run=dry_run)
    return {**done, "policy": policy}
