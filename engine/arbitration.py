"""Arbitration: rank the surviving offers by expected value (propensity × value) and keep at
most N per kind (default one renewal and one upsell). Ties keep the earlier-fired offer."""
from __future__ import annotations

from .actions import blocking


def expected_value(offer: dict) -> float:
    p, v = offer.get("propensity"), offer.get("value")
    if p is None or v is None:
        return 0.0
    return round(float(p) * float(v), 6)


def arbitrate(flow, offers: list, blocks: list) -> tuple[list, list]:
    """(selected offers in rank order, dropped offers with the reason)."""
    limits = dict(flow.arbitration.max_per_kind)
    dropped, candidates = [], []
    for order, offer in enumerate(offers):
        b = blocking(blocks, offer)
        if b is not None:
            dropped.append({"offer": offer["offer"], "reason": f"blocked by rule {b['rule']}: {b['reason']}"})
            continue
        o = dict(offer)
        o["expected_value"] = expected_value(o)
        candidates.append((order, o))
    candidates.sort(key=lambda x: (-x[1]["expected_value"], x[0]))
    chosen, per_kind, codes = [], {}, set()
    for _, o in candidates:
        if o["offer"] in codes:
            dropped.append({"offer": o["offer"], "reason": "recommended twice; the higher expected value was kept"})
            continue
        n = per_kind.get(o["kind"], 0)
        if n >= limits.get(o["kind"], 1):
            dropped.append({"offer": o["offer"], "reason": f"ranked below another {o['kind']} offer "
                            f"(expected value {o['expected_value']})"})
            continue
        per_kind[o["kind"]] = n + 1
        codes.add(o["offer"])
        o["rank"] = len(chosen) + 1
        chosen.append(o)
    return chosen, dropped
