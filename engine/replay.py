"""What a ruleset change does to real decisions: recorded decisions decided again on other rules,
and the differences that matter to an account (status, offers and discounts, actions,
escalations, approval) — the trace may differ without anything changing for the account.

Recorded facts carry the scores they were decided with, so replaying them needs no model and
gives the same decision on the same rules (deterministic)."""
from __future__ import annotations

from .choose import Recorded
from .explore import NONE, RecordedArm

from collections import Counter
from dataclasses import dataclass, field

from .decision import Decision



def plan_of(result: dict) -> dict:
    """What a recorded or fresh result makes happen (engine/decision.Decision.plan)."""
    return Decision.from_result(result).plan()


def _action_changes(before: dict, after: dict) -> list[str]:
    out = []
    for kind in sorted(set(before) | set(after)):
        old, new = before.get(kind, []), after.get(kind, [])
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                out.append(f"action {kind} dropped")
            elif i >= len(old):
                out.append(f"action {kind} added")
            else:
                for key in sorted(set(old[i]) | set(new[i])):
                    if old[i].get(key) != new[i].get(key):
                        out.append(f"action {kind} {key} {old[i].get(key, '-')} → {new[i].get(key, '-')}")
    return out


def differences(before: dict, after: dict) -> list[str]:
    """Each change, worded for a rule author; [] when the account would see no difference."""
    a, b = plan_of(before), plan_of(after)
    out = []
    if a["status"] != b["status"]:
        out.append(f"status {a['status']} → {b['status']}")
    for offer in sorted(set(a["offers"]) | set(b["offers"])):
        if offer not in b["offers"]:
            out.append(f"offer {offer} dropped")
        elif offer not in a["offers"]:
            out.append(f"offer {offer} added (discount {b['offers'][offer]})")
        elif a["offers"][offer] != b["offers"][offer]:
            out.append(f"offer {offer} discount {a['offers'][offer]} → {b['offers'][offer]}")
    out += _action_changes(a["actions"], b["actions"])
    gone = Counter(a["escalations"]) - Counter(b["escalations"])
    new = Counter(b["escalations"]) - Counter(a["escalations"])
    out += [f"escalation to {x} dropped" for x in sorted(gone.elements())]
    out += [f"escalation to {x} added" for x in sorted(new.elements())]
    if a["approval"] != b["approval"]:
        out.append("approval now required" if b["approval"] else "approval no longer required")
    elif a["approval"] and a["queues"] != b["queues"]:
        out.append(f"approval queues {', '.join(a['queues'])} → {', '.join(b['queues'])}")
    return out


def change_kinds(before: dict, after: dict) -> list[str]:
    """The differences by kind, as a change is summed up across decisions: offer added or
    dropped, discount up or down, newly escalated, newly held for approval…"""
    a, b = plan_of(before), plan_of(after)
    out = []
    if a["status"] != b["status"]:
        out.append("status changed")
    old, new = a["offers"], b["offers"]
    if set(new) - set(old):
        out.append("offer added")
    if set(old) - set(new):
        out.append("offer dropped")
    moved = [(old[o] or 0, new[o] or 0) for o in set(old) & set(new) if old[o] != new[o]]
    if any(n > o for o, n in moved):
        out.append("discount up")
    if any(n < o for o, n in moved):
        out.append("discount down")
    if a["actions"] != b["actions"]:
        out.append("actions changed")
    if Counter(b["escalations"]) - Counter(a["escalations"]):
        out.append("newly escalated")
    if Counter(a["escalations"]) - Counter(b["escalations"]):
        out.append("escalation dropped")
    if b["approval"] and not a["approval"]:
        out.append("newly held for approval")
    elif a["approval"] and not b["approval"]:
        out.append("no longer held for approval")
    return out


def acted_otherwise(before: dict, after: dict) -> list[str]:
    """The rules, tables and guardrails responsible for a difference: those that fired on one
    side only or set other values (a table's other row, a rule's other output), the guardrails
    that adjusted or blocked otherwise, and "human capacity" when a touch was admitted on one
    side only (the queue's slots went to other accounts first)."""
    def fired(result: dict) -> dict:
        out: dict = {}
        for f in (result.get("trace") or {}).get("fired", []):
            out.setdefault(f["id"], []).append((repr(f.get("set")), repr(f.get("rows"))))
        return out

    def guarded(result: dict) -> dict:
        out: dict = {}
        for a in (result.get("adjustments") or []) + (result.get("blocked") or []):
            if a.get("guardrail"):
                out.setdefault(a["guardrail"], []).append(repr(sorted((k, repr(v)) for k, v in a.items() if k != "reason")))
        return out

    names = []
    for read in (fired, guarded):
        a, b = read(before), read(after)
        names += [n for n in sorted(set(a) | set(b), key=str) if a.get(n) != b.get(n)]
    admitted = {_admitted(before), _admitted(after)}
    if admitted == {True, False}:
        names.append("human capacity")
    return names


@dataclass
class Report:
    flow: str
    version: str
    replayed: int = 0
    changed: int = 0
    failed: int = 0
    recorded_versions: Counter = field(default_factory=Counter)
    changes: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)

    def as_json(self) -> dict:
        return {"flow": self.flow, "version": self.version, "replayed": self.replayed, "changed": self.changed,
                "unchanged": self.replayed - self.changed - self.failed, "failed": self.failed,
                "recorded_versions": dict(self.recorded_versions), "changes": dict(self.changes.most_common()),
                "examples": self.examples}


def _admitted(result: dict):
    """The capacity admission the recorded decision got (None when it asked for none)."""
    adm = ((result or {}).get("trace") or {}).get("choice", {}).get("admission")
    return None if adm is None else bool(adm.get("admitted"))


def recorded_arm(result: dict, base=None) -> RecordedArm:
    """The exploration that reproduces a recorded decision's arm (holdout, explore, exploit)."""
    arm = ((result or {}).get("policy") or {}).get("arm")
    return RecordedArm(arm, base or NONE)


def replay(decider, records, examples: int = 10) -> Report:
    """records: (decision id, account id, recorded version, facts, result) tuples. Each is
    decided with its recorded capacity admission and in its recorded arm."""
    report = Report(decider.flow.name, decider.flow.version)
    for decision_id, account_id, version, facts, result in records:
        report.replayed += 1
        report.recorded_versions[version] += 1
        try:
            again = decider.decide(facts, claim=False, capacity=Recorded(_admitted(result)),
                                   exploration=recorded_arm(result, decider.exploration))
        except Exception as exc:  # noqa: BLE001 - facts that no longer fit, a failing rule: counted and shown
            report.failed += 1
            if len(report.examples) < examples:
                report.examples.append({"id": decision_id, "account_id": account_id, "version": version,
                                        "changes": [f"could not decide: {exc}"]})
            continue
        diff = differences(result, again)
        if diff:
            report.changed += 1
            report.changes.update(diff)
            if len(report.examples) < examples:
                report.examples.append({"id": decision_id, "account_id": account_id, "version": version,
                                        "changes": diff})
    return report


def report_text(r: Report) -> str:
    versions = ", ".join(f"{v} ×{n}" for v, n in r.recorded_versions.most_common()) or "none"
    unchanged = r.replayed - r.changed - r.failed
    share = f" ({unchanged / r.replayed:.1%})" if r.replayed else ""
    lines = [f"replayed {r.replayed} decisions of flow {r.flow} (recorded on {versions}) on version {r.version}",
             f"  unchanged {unchanged}{share}, changed {r.changed}, could not decide {r.failed}"]
    if r.changes:
        lines.append("changes:")
        width = max(len(c) for c in r.changes)
        lines += [f"  {c.ljust(width)}  {n}" for c, n in r.changes.most_common()]
    if r.examples:
        lines.append("examples:")
        lines += [f"  {e['id']} {e['account_id'] or '-'}: {'; '.join(e['changes'])}" for e in r.examples]
    return "\n".join(lines) + "\n"
