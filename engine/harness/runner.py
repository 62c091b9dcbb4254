"""Runs cases through the real pipeline (durable_rules engine) and compares expectations.

Expectations are partial: only what a case names is checked. Lists of offers, escalations,
actions and adjustments must match in number; within an item only the named fields are
compared, and `reason` passes when the expected text is contained in the actual reason.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from .. import dates
from ..errors import DecisionError, FactsError
from ..notation import shown

KEYED = {"offers": "offer", "allowed": "offer", "escalations": "queue", "actions": "type", "adjustments": "guardrail"}
# what a flow's choose stage decides; a case pins these only where the choice is clear-cut, and
# pins `allowed` (what the policies permit, with each offer's discount ceiling) everywhere else
CHOSEN = ("next_best_action", "human", "reevaluate")


@dataclass
class CaseResult:
    case: object
    failures: list = field(default_factory=list)
    decision: dict | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def _same(a, b) -> bool:
    a = dates.normalise(a)  # an unquoted 2026-03-31 in a test file is the ISO text a fact holds
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return all(k in b and _same(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _show(v) -> str:
    return shown(dates.normalise(v))


def _match_item(want: dict, got: dict, where: str, failures: list) -> None:
    for k, v in want.items():
        if k not in got:
            failures.append(f"{where}.{k}: expected {_show(v)}, but the {where.split('[')[0][:-1]} has no {k}")
        elif k == "reason" and isinstance(v, str):
            if v not in (got[k] or ""):
                failures.append(f"{where}.reason: expected to contain {_show(v)}, got {_show(got[k])}")
        elif isinstance(v, dict) and isinstance(got[k], dict):
            _match_item(v, got[k], f"{where}.{k}", failures)
        elif not _same(v, got[k]):
            failures.append(f"{where}.{k}: expected {_show(v)}, got {_show(got[k])}")


def _match_list(name: str, want: list, got: list, failures: list) -> None:
    key = KEYED[name]
    remaining = list(got)
    for i, w in enumerate(want):
        idx = next((j for j, g in enumerate(remaining) if g.get(key) == w.get(key)
                    and all(g.get(k) == v for k, v in w.items() if k in ("offer", "type", "guardrail", "queue"))), None)
        if idx is None:
            have = ", ".join(_show(g.get(key)) for g in got) or "none"
            failures.append(f"{name}: expected {key} {_show(w.get(key))}, not among the {name} ({have})")
            continue
        _match_item(w, remaining.pop(idx), f"{name}[{w.get(key)}]", failures)
    for g in remaining:
        failures.append(f"{name}: unexpected {key} {_show(g.get(key))}" + (f" ({g['reason']})" if g.get("reason") else ""))


def _unknown(path: str, wm_facts: dict, known) -> str:
    """'' for a fact the flow has; else the words saying it has no such fact, with the closest one."""
    if path in wm_facts or path in known or not known:
        return ""
    close = difflib.get_close_matches(path, sorted(set(known) | set(wm_facts)), n=1, cutoff=0.6)
    return f"'{path}' is not a fact of this flow" + (f"; did you mean '{close[0]}'?" if close else "")


def known_facts(flow) -> frozenset:
    """Every fact path a decision of `flow` can hold: the schema's, the decision time, the offers'
    totals and whatever a rule or table sets."""
    from ..actions import AGGREGATE_PATHS, agenda_items, writes
    from ..facts import DECISION_PATHS, schema_paths
    out = set(schema_paths(flow.facts_schema or {})) | set(DECISION_PATHS) | set(AGGREGATE_PATHS)
    for item in agenda_items(flow):
        out |= writes(item)
    return frozenset(out)


def check(expect: dict, decision: dict, wm_facts: dict, known=frozenset()) -> list[str]:
    """The failures of `decision` against `expect`; `known` (the flow's fact paths) lets a
    misspelt expected fact be named as such, with the closest one, instead of passing or failing
    for the wrong reason."""
    failures: list[str] = []
    for name in KEYED:
        if name in expect:
            got = decision.get(name)
            if got is None and name == "allowed":
                got = decision["offers"]
            _match_list(name, expect[name], got or [], failures)
    for name in CHOSEN:
        if name not in expect:
            continue
        want, got = expect[name], decision.get(name)
        if want is None or got is None:
            if want is not got and not (want is None and got is None):
                failures.append(f"{name}: expected {_show(want)}, got {_show(got)}")
        else:
            _match_item(want, got, name, failures)
    if "blocked" in expect:
        got = sorted({b["offer"] for b in decision["blocked"]})
        want = sorted(set(expect["blocked"]))
        if got != want:
            failures.append(f"blocked: expected {_show(want)}, got {_show(got)}")
    fired = [f["id"] for f in decision["trace"]["fired"]]
    unmatched = {f["id"] for f in decision["trace"]["fired"] if f["kind"] == "table" and not f["rows"]}
    shown = [f"{i} (no row matched)" if i in unmatched else i for i in fired]
    for rid in expect.get("fired", []):
        if rid not in fired:
            failures.append(f"fired: expected '{rid}' to fire; fired: {', '.join(shown) or 'nothing'}")
    for rid in expect.get("not_fired", []):
        if rid in unmatched:
            failures.append(f"not_fired: table '{rid}' was worked out, and no row matched (its outputs took "
                            "their defaults); a `when` on the table keeps it from being worked out")
        elif rid in fired:
            failures.append(f"not_fired: '{rid}' fired")
    for path, v in (expect.get("facts") or {}).items():
        unknown = _unknown(path, wm_facts, known)
        if unknown:
            failures.append(f"facts.{path}: {unknown}")
        elif v is None:
            if path in wm_facts:
                failures.append(f"facts.{path}: expected no value, got {_show(wm_facts[path])}")
        elif path not in wm_facts:
            failures.append(f"facts.{path}: expected {_show(v)}, but no rule set it")
        elif not _same(v, wm_facts[path]):
            failures.append(f"facts.{path}: expected {_show(v)}, got {_show(wm_facts[path])}")
    if "approval_required" in expect and expect["approval_required"] != decision["approval"]["required"]:
        why = "; ".join(r["reason"] for r in decision["approval"]["reasons"]) or "nothing asked for it"
        failures.append(f"approval_required: expected {_show(expect['approval_required'])}, got "
                        f"{_show(decision['approval']['required'])} ({why})")
    if "approval_queues" in expect and sorted(expect["approval_queues"]) != decision["approval"]["queues"]:
        failures.append(f"approval_queues: expected {_show(sorted(expect['approval_queues']))}, got "
                        f"{_show(decision['approval']['queues'])}")
    if "dropped" in expect:
        got = sorted({d.get("offer") or d.get("type") for d in decision["trace"]["arbitration"]})
        if sorted(set(expect["dropped"])) != got:
            failures.append(f"dropped: expected {_show(sorted(set(expect['dropped'])))}, got {_show(got)}")
    if "status" in expect and expect["status"] != decision["status"]:
        failures.append(f"status: expected {_show(expect['status'])}, got {_show(decision['status'])}")
    return failures


def run_case(decider, case) -> CaseResult:
    expect = case.expect
    try:
        decision = decider.decide(case.facts)
    except FactsError as exc:
        if expect.get("error") == "facts":
            return CaseResult(case)
        return CaseResult(case, [f"the facts were refused: {exc}"], error="facts")
    except DecisionError as exc:
        if expect.get("error") == exc.code:
            return CaseResult(case)
        return CaseResult(case, [f"the decision failed: {exc}"], error=exc.code)
    if "error" in expect:
        return CaseResult(case, [f"error: expected {expect['error']}, but the decision succeeded"], decision)
    wm = {**_inputs(case.facts), **decision["derived"]}
    known = getattr(decider, "_known_facts", None)
    if known is None:
        known = known_facts(decider.flow)
        try:
            decider._known_facts = known
        except AttributeError:
            pass
    return CaseResult(case, check(expect, decision, wm, known), decision)


def _inputs(facts: dict) -> dict:
    from ..facts import flatten
    return flatten(facts)
