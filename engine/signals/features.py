"""An account's events folded into state, and the features read from that state at a time.

The fold is order-independent: every part of the state is a join (sums per day, latest value
by (time, event id), latest close, latest payment), and pruning drops each part by its own
event's time against the newest event's window, so folding the same events in any order — live
as they arrive, or replayed from the event store — gives the same state, byte for byte.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from .catalog import WINDOW_DAYS
from .events import Event

TICKET_KEEP_DAYS = 365  # a ticket or invoice untouched this long before the newest event is forgotten
PROFILE_FIELDS = ("segment", "arr", "plan", "seats", "seat_price", "nps", "email_domain", "tags",
                  "last_contact_at", "renewal_date", "term_months", "requested_discount")
SEVERITY_RANK = {"sev1": 1, "sev2": 2, "sev3": 3, "sev4": 4}


def stamp(at: datetime) -> str:
    """Fixed-width UTC time, so strings compare like times."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def empty_state() -> dict:
    return {"events": 0, "newest": None, "profile": {}, "usage": {}, "logins": {}, "incidents": {},
            "seats_used": None, "opportunity": None, "tickets": {}, "invoices": {}}


def _latest(current, value, key: str):
    """Last writer wins by (occurred_at, event id): [value, key]."""
    if current is None or key > current[1]:
        return [value, key]
    return current


def _day(at: datetime) -> str:
    return at.astimezone(timezone.utc).date().isoformat()


def fold(state: dict, event: Event) -> dict:
    """Fold one (new, never seen) event into the state, in place; returns the state."""
    at = stamp(event.occurred_at)
    key = f"{at}|{event.id}"
    state["events"] += 1
    if state["newest"] is None or at > state["newest"]:
        state["newest"] = at
    data, kind = event.data, event.type
    if kind in ("crm.account_updated", "crm.renewal_window_opened", "billing.contract_changed"):
        profile = state["profile"]
        for name in PROFILE_FIELDS:
            if name in data:
                profile[name] = _latest(profile.get(name), data[name], key)
    elif kind == "crm.opportunity_stage":
        state["opportunity"] = _latest(state["opportunity"], {"id": data["opportunity_id"], "stage": data["stage"],
                                                              "amount": data.get("amount")}, key)
    elif kind == "product.seats_used":
        state["seats_used"] = _latest(state["seats_used"], data["seats_used"], key)
    elif kind in ("product.usage", "product.logins"):
        buckets = state["usage" if kind == "product.usage" else "logins"]
        day = _day(event.occurred_at)
        buckets[day] = buckets.get(day, 0) + data["count"]
    elif kind == "support.incident":
        day = state["incidents"].setdefault(_day(event.occurred_at), {})
        old = day.get(data["incident_id"])
        if old is None or SEVERITY_RANK[data["severity"]] < SEVERITY_RANK[old]:
            day[data["incident_id"]] = data["severity"]
    elif kind == "support.ticket_opened":
        t = state["tickets"].setdefault(data["ticket_id"], {})
        t["opened"] = _latest(t.get("opened"), data["severity"], key)
    elif kind == "support.ticket_closed":
        t = state["tickets"].setdefault(data["ticket_id"], {})
        t["closed"] = max(t.get("closed", at), at)
    elif kind == "billing.invoice_overdue":
        inv = state["invoices"].setdefault(data["invoice_id"], {})
        inv["overdue"] = _latest(inv.get("overdue"), data["due_date"], key)
    elif kind == "billing.invoice_paid":
        inv = state["invoices"].setdefault(data["invoice_id"], {})
        inv["paid"] = max(inv.get("paid", at), at)
    _prune(state)
    return state


def _parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _prune(state: dict) -> None:
    newest = _parse_stamp(state["newest"])
    first_day = (newest.date() - timedelta(days=WINDOW_DAYS)).isoformat()
    for name in ("usage", "logins", "incidents"):
        buckets = state[name]
        if buckets and min(buckets) < first_day:
            state[name] = {d: v for d, v in buckets.items() if d >= first_day}
    horizon = stamp(datetime.combine(newest.date() - timedelta(days=TICKET_KEEP_DAYS), datetime.min.time(),
                                     tzinfo=timezone.utc))
    for name in ("tickets", "invoices"):
        items = state[name]
        stale = [k for k, parts in items.items() if any(_time(v) < horizon for v in parts.values())]
        for k in stale:  # each part by its own event's time, so it goes in any order of arrival
            kept = {p: v for p, v in items[k].items() if _time(v) >= horizon}
            if kept:
                items[k] = kept
            else:
                del items[k]


def _time(part) -> str:
    """A part's event time: a stamp, or the stamp in a [value, "stamp|event id"] pair."""
    return part[1].split("|", 1)[0] if isinstance(part, list) else part


def canonical(state: dict) -> dict:
    """Keys sorted at every level, so equal states serialise identically."""
    if isinstance(state, dict):
        return {k: canonical(state[k]) for k in sorted(state)}
    if isinstance(state, list):
        return [canonical(v) for v in state]
    return state


def rebuild(events) -> dict:
    """The state of an account from its events (any order)."""
    state = empty_state()
    for e in events:
        fold(state, e)
    return canonical(state)


def _sum_days(buckets: dict, as_of: date, start: int, end: int) -> int:
    """Sum of the buckets from `end` days back (exclusive) to `start` days back (inclusive)."""
    lo = (as_of - timedelta(days=end)).isoformat()
    hi = (as_of - timedelta(days=start)).isoformat()
    return sum(v for d, v in buckets.items() if lo < d <= hi)


def _growth(recent: int, before: int):
    return round(recent / before - 1, 4) if before > 0 else None


def features(state: dict, account_id: str, as_of: datetime) -> dict:
    """Every feature of engine/signals/catalog.FEATURES that the state can tell; unknown ones
    are absent (never guessed)."""
    day = as_of.astimezone(timezone.utc).date()
    profile = {k: v[0] for k, v in state["profile"].items()}
    out: dict = {"account_id": account_id}
    for name in ("segment", "arr", "plan", "seats", "seat_price", "nps", "email_domain", "tags",
                 "renewal_date", "term_months", "requested_discount"):
        if name in profile:
            out[name] = profile[name]
    if "last_contact_at" in profile:
        contacted = datetime.fromisoformat(profile["last_contact_at"]).astimezone(timezone.utc)
        out["days_since_last_contact"] = max(0, (as_of - contacted).days)
    if "renewal_date" in profile:
        out["days_to_renewal"] = (date.fromisoformat(profile["renewal_date"]) - day).days
    if state["opportunity"] is not None:
        opp = state["opportunity"][0]
        out["opportunity_stage"] = opp["stage"]
        if opp.get("amount") is not None:
            out["opportunity_amount"] = opp["amount"]
    usage, logins = state["usage"], state["logins"]
    if usage:
        u30, u_prev30 = _sum_days(usage, day, 0, 30), _sum_days(usage, day, 30, 60)
        u90, u_prev90 = _sum_days(usage, day, 0, 90), _sum_days(usage, day, 90, 180)
        out["usage_30d"], out["usage_90d"] = u30, u90
        for name, value in (("usage_growth_30d", _growth(u30, u_prev30)), ("usage_growth_90d", _growth(u90, u_prev90))):
            if value is not None:
                out[name] = value
    if logins:
        out["logins_30d"] = _sum_days(logins, day, 0, 30)
    if state["seats_used"] is not None:
        out["seats_used"] = state["seats_used"][0]
        if profile.get("seats"):
            out["seat_utilisation"] = round(out["seats_used"] / profile["seats"], 4)
    recent = {d: v for d, v in state["incidents"].items()
              if (day - timedelta(days=30)).isoformat() < d <= day.isoformat()}
    out["incidents_30d"] = sum(len(v) for v in recent.values())
    out["sev1_incidents_30d"] = sum(1 for v in recent.values() for s in v.values() if s == "sev1")
    out["open_tickets"] = sum(1 for t in state["tickets"].values() if "opened" in t and "closed" not in t)
    overdue = [date.fromisoformat(i["overdue"][0]) for i in state["invoices"].values()
               if "overdue" in i and "paid" not in i and date.fromisoformat(i["overdue"][0]) < day]
    out["overdue_invoices"] = len(overdue)
    out["days_overdue"] = max(((day - d).days for d in overdue), default=0)
    if state["newest"] is not None:
        out["last_event_at"] = _parse_stamp(state["newest"]).isoformat().replace("+00:00", "Z")
    return out
