"""Two policies on the same book, account by account, against the truth: what a change of
rules does to expected net revenue and to the discount given, with a paired 95% interval (each
account is its own control, so the interval is narrow when few accounts change), and the policy
breaches (simulator.run.breaches) under each. `postsale diff` reads this; the truth stays here."""
from __future__ import annotations

from collections import Counter

from engine.response.ope import paired_total

from .actions import NONE, Action
from .book import Account
from .run import actions_of, breaches
from .truth import HUMAN_COST, expected


def describe(action: Action, day: bool = False) -> str:
    """The plan in a few words: `renewal 12m at 10% + addon_seats ×4 + CSM`, or `nothing`."""
    parts = []
    if action.renewal is not None:
        parts.append(f"renewal {action.renewal.term_months}m at {action.renewal.discount:g}%")
    if action.upsell is not None:
        parts.append(action.upsell.offer + (f" ×{action.upsell.seats}" if action.upsell.seats else ""))
    if action.human:
        parts.append("human review" if action.mandatory else "CSM")
    text = " + ".join(parts) or "nothing"
    return f"{text} ({action.day} days before renewal)" if day and action.day is not None else text


def kinds(before: Action, after: Action) -> list[str]:
    """How the plan changed, by kind (a renewal's discount up or down, an offer added…)."""
    out = []
    a, b = before.renewal, after.renewal
    if a is None and b is not None:
        out.append("renewal offer added")
    elif a is not None and b is None:
        out.append("renewal offer dropped")
    elif a is not None:
        if b.discount > a.discount:
            out.append("discount up")
        elif b.discount < a.discount:
            out.append("discount down")
        if a.term_months != b.term_months:
            out.append("renewal term changed")
    if before.upsell != after.upsell:
        out.append("upsell added" if before.upsell is None else "upsell dropped" if after.upsell is None
                   else "upsell changed")
    if before.human != after.human:
        out.append("human touch added" if after.human else "human touch dropped")
    if before.day != after.day:
        out.append("timing changed")
    return out


def compare(accounts: list[Account], base, head, human_cost: float = HUMAN_COST, examples: int = 5,
            why=None) -> dict:
    """base, head: simulator policies (each decides every account once, with "not yet" followed
    as simulator.run does). Net revenue is also given as a share of the base's uplift over doing
    nothing (what its decisions earn: most of a book's revenue renews whatever is decided).
    `why(account id)`: the rules responsible for a changed account's difference, counted.
    Examples are the changed accounts whose revenue moves most."""
    before, _ = actions_of(base, accounts)
    after, _ = actions_of(head, accounts)
    values, changed, found, rules = ([], []), [], Counter(), Counter()
    humans = {side: {"touches": 0, "reviews": 0} for side in ("base", "head")}
    net = {"base": 0.0, "head": 0.0, "none": 0.0}
    paid = {"base": 0.0, "head": 0.0}
    breached = {side: {"over_cap": 0, "overdue_discount": 0} for side in ("base", "head")}
    for acct, a, b in zip(accounts, before, after):
        ea, eb = expected(acct, a, human_cost), expected(acct, b, human_cost)
        net["base"] += ea.net
        net["head"] += eb.net
        net["none"] += expected(acct, NONE, human_cost).net
        paid["base"] += ea.discount_usd
        paid["head"] += eb.discount_usd
        values[0].append(ea.net)
        values[1].append(eb.net)
        for side, action in (("base", a), ("head", b)):
            over_cap, overdue = breaches(acct.facts, action)
            breached[side]["over_cap"] += over_cap
            breached[side]["overdue_discount"] += overdue
            if action.human:
                humans[side]["reviews" if action.mandatory else "touches"] += 1
        how = kinds(a, b)
        if how:
            found.update(how)
            timing = a.day != b.day
            change = {"account": acct.id, "segment": acct.facts["account"]["segment"],
                      "before": describe(a, timing), "after": describe(b, timing), "changes": how,
                      "net_revenue_delta": round(eb.net - ea.net, 2),
                      "discount_delta": round(eb.discount_usd - ea.discount_usd, 2)}
            if why is not None:
                change["rules"] = why(acct.id)
                rules.update(change["rules"])
            changed.append(change)
    low, high = paired_total(*values)["ci95"]
    delta = net["head"] - net["base"]
    uplift = net["base"] - net["none"]
    changed.sort(key=lambda c: (-abs(c["net_revenue_delta"]), c["account"]))
    return {"accounts": len(accounts), "changed": len(changed), "kinds": dict(found.most_common()),
            "net_revenue": {"base": round(net["base"], 2), "head": round(net["head"], 2), "delta": round(delta, 2),
                            "interval": [round(low, 2), round(high, 2)],
                            "delta_pct": round(100 * delta / net["base"], 4) if net["base"] else None,
                            "base_uplift": round(uplift, 2),
                            "delta_pct_of_uplift": round(100 * delta / uplift, 4) if uplift > 0 else None},
            "discount_usd": {"base": round(paid["base"], 2), "head": round(paid["head"], 2),
                             "delta": round(paid["head"] - paid["base"], 2)},
            "breaches": breached, "human": humans, "rules": dict(rules.most_common()),
            "examples": changed[:max(0, examples)]}


__all__ = ["compare", "describe", "kinds"]
