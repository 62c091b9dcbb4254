"""A decision, told in words a rule author reads: what fired and why, what guardrails changed,
what was chosen and what was dropped."""
from __future__ import annotations

from .notation import shown as _v


def explain_text(decision: dict) -> str:
    lines = [f"flow {decision['flow']} @ {decision['ruleset_version']}: {decision['status']}"]
    if decision.get("models"):
        lines.append("models: " + ", ".join(f"{k}={v}" for k, v in sorted(decision["models"].items())))
    lines.append("")
    lines.append("rules fired and tables worked out, in order:")
    for f in decision["trace"]["fired"]:
        matched = ", ".join(f"{k}={_v(v)}" for k, v in f["matched"].items())
        if f["kind"] != "table":
            kind = "rule"
        elif f["rows"]:
            kind = f"table ({f['hit_policy']}, rows {', '.join(map(str, f['rows']))})"
        else:
            kind = f"table ({f['hit_policy']}), no row matched"
        lines.append(f"  {f['seq']:>2}. {f['ruleset']}/{f['id']} [{kind}, priority {f['priority']}]")
        if matched:
            lines.append(f"      matched: {matched}")
        if f["set"]:
            lines.append("      set: " + ", ".join(f"{k}={_v(v)}" for k, v in f["set"].items()))
        elif f["kind"] == "table" and not f["rows"]:
            lines.append("      set: nothing (no defaults)")
    for s in decision["trace"].get("skipped", []):
        lines.append(f"  skipped: {s['rule']} did not set {s['set']}: {s['reason']}")
    if decision["adjustments"]:
        lines.append("")
        lines.append("guardrails:")
        for a in decision["adjustments"]:
            lines.append(f"  {a['guardrail']}: {a['reason']}")
    lines.append("")
    lines.append("offers:" if decision["offers"] else "offers: none")
    for o in decision["offers"]:
        term = f", {_v(o['term_months'])} months" if o.get("term_months") is not None else ""
        lines.append(f"  #{o['rank']} {o['offer']} ({o['kind']}{term}, discount {_v(o['discount'])}%, expected value "
                     f"{_v(o['expected_value'])}) - {o['reason']}")
    for d in decision["trace"]["arbitration"]:
        lines.append(f"  dropped {d.get('offer') or d.get('type')}: {d['reason']}")
    for b in decision["blocked"]:
        lines.append(f"  blocked {b['offer']}: {b['reason']}")
    if decision["escalations"]:
        lines.append("")
        lines.append("escalations:")
        for e in decision["escalations"]:
            lines.append(f"  {e['queue']}{' (approval)' if e['approval'] else ''}: {e['reason']}")
    lines.append("")
    lines.append("actions:" if decision["actions"] else "actions: none")
    for a in decision["actions"]:
        params = ", ".join(f"{k}={_v(v)}" for k, v in a["params"].items())
        lines.append(f"  {a['type']} [{a['status']}] {params}")
    if decision["approval"]["required"]:
        lines.append("")
        lines.append("approval required from " + ", ".join(decision["approval"]["queues"]) + ":")
        for r in decision["approval"]["reasons"]:
            lines.append(f"  - {r['reason']}")
    return "\n".join(lines) + "\n"
