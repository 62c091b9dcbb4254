"""The fold: hand-checked features, and order independence (the property replay relies on)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from engine.signals.events import Event, parse_event
from engine.signals.features import canonical, empty_state, features, fold, rebuild

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def ev(id_, type_, at, **data) -> Event:
    return Event(id=id_, type=type_, account_id="a1", occurred_at=at, data=data)


def story() -> list[Event]:
    out = [ev("p1", "crm.account_updated", NOW - timedelta(days=200), segment="enterprise", arr=500000.0,
              plan="pro", seats=400, seat_price=1200, nps=8, last_contact_at="2026-10-01T00:00:00Z"),
           ev("p2", "crm.account_updated", NOW - timedelta(days=100), nps=6),
           ev("r1", "crm.renewal_window_opened", NOW - timedelta(days=10), renewal_date="2027-01-20",
              term_months=12, requested_discount=10),
           ev("s1", "product.seats_used", NOW - timedelta(days=3), seats_used=380),
           ev("s0", "product.seats_used", NOW - timedelta(days=30), seats_used=300),
           ev("i1", "support.incident", NOW - timedelta(days=5), incident_id="INC1", severity="sev2"),
           ev("i1b", "support.incident", NOW - timedelta(days=5), incident_id="INC1", severity="sev1"),
           ev("i2", "support.incident", NOW - timedelta(days=40), incident_id="INC2", severity="sev3"),
           ev("t1", "support.ticket_opened", NOW - timedelta(days=9), ticket_id="T1", severity="high"),
           ev("t2", "support.ticket_opened", NOW - timedelta(days=9), ticket_id="T2", severity="low"),
           ev("t2c", "support.ticket_closed", NOW - timedelta(days=2), ticket_id="T2"),
           ev("b1", "billing.invoice_overdue", NOW - timedelta(days=5), invoice_id="I1", due_date="2026-11-01"),
           ev("b2", "billing.invoice_overdue", NOW - timedelta(days=5), invoice_id="I2", due_date="2026-10-01"),
           ev("b2p", "billing.invoice_paid", NOW - timedelta(days=1), invoice_id="I2")]
    for d in range(180):
        out.append(ev(f"u{d}", "product.usage", NOW - timedelta(days=d), count=200 if d < 90 else 100))
        out.append(ev(f"l{d}", "product.logins", NOW - timedelta(days=d), count=10))
    return out


def test_features_of_a_known_story():
    f = features(rebuild(story()), "a1", NOW)
    assert f["segment"] == "enterprise" and f["nps"] == 6  # the newer answer wins
    assert f["days_to_renewal"] == 56 and f["term_months"] == 12 and f["requested_discount"] == 10
    assert f["days_since_last_contact"] == 55
    assert f["usage_30d"] == 30 * 200 and f["usage_90d"] == 90 * 200
    assert f["usage_growth_90d"] == 1.0 and f["usage_growth_30d"] == 0.0
    assert f["logins_30d"] == 300
    assert f["seats_used"] == 380 and f["seat_utilisation"] == 0.95
    assert f["incidents_30d"] == 1 and f["sev1_incidents_30d"] == 1  # one incident, updated to sev1
    assert f["open_tickets"] == 1
    assert f["overdue_invoices"] == 1 and f["days_overdue"] == 24
    assert f["last_event_at"] == "2026-11-25T12:00:00Z"


def test_unknown_features_are_absent_not_guessed():
    f = features(rebuild([ev("u", "product.usage", NOW, count=5)]), "a1", NOW)
    assert "segment" not in f and "usage_growth_90d" not in f and "days_to_renewal" not in f
    assert f["usage_30d"] == 5 and f["open_tickets"] == 0 and f["days_overdue"] == 0


def test_old_buckets_fall_out_of_the_window():
    events = [ev("old", "product.usage", NOW - timedelta(days=400), count=7), ev("new", "product.usage", NOW, count=1)]
    assert rebuild(events)["usage"] == rebuild(events[::-1])["usage"] == {NOW.date().isoformat(): 1}


def test_state_is_plain_json():
    state = rebuild(story())
    assert json.loads(json.dumps(state)) == state


@st.composite
def event_lists(draw):
    kinds = st.sampled_from(["usage", "logins", "seats", "incident", "open", "close", "overdue", "paid", "profile"])
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        kind = draw(kinds)
        at = NOW - timedelta(days=draw(st.integers(0, 500)), seconds=draw(st.integers(0, 86399)))
        ref = draw(st.sampled_from(["x", "y", "z"]))
        data = {"usage": ("product.usage", {"count": draw(st.integers(0, 50))}),
                "logins": ("product.logins", {"count": draw(st.integers(0, 50))}),
                "seats": ("product.seats_used", {"seats_used": draw(st.integers(0, 50))}),
                "incident": ("support.incident", {"incident_id": ref, "severity": draw(st.sampled_from(["sev1", "sev2", "sev4"]))}),
                "open": ("support.ticket_opened", {"ticket_id": ref, "severity": "high"}),
                "close": ("support.ticket_closed", {"ticket_id": ref}),
                "overdue": ("billing.invoice_overdue", {"invoice_id": ref, "due_date": draw(st.sampled_from(["2026-01-01", "2026-06-01"]))}),
                "paid": ("billing.invoice_paid", {"invoice_id": ref}),
                "profile": ("crm.account_updated", {"seats": draw(st.integers(1, 9)), "nps": draw(st.integers(0, 10))})}[kind]
        out.append(ev(f"e{i}", data[0], at, **data[1]))
    return out


@settings(max_examples=300, deadline=None)
@given(event_lists(), st.randoms(use_true_random=False), st.integers(1, 10))
def test_any_order_and_any_batching_give_the_same_state(events, rnd, batch):
    expected = rebuild(events)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    state = empty_state()
    for i in range(0, len(shuffled), batch):  # folded batch by batch, through JSON, as the store does
        state = json.loads(json.dumps(state))
        for e in shuffled[i:i + batch]:
            fold(state, e)
        state = canonical(state)
    assert state == expected
    assert features(state, "a1", NOW) == features(expected, "a1", NOW)


def test_event_round_trips_through_json():
    e = story()[0]
    again = parse_event(e.as_json(), now=NOW)
    assert again == e and again.data == e.data


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10, 10 ** 13) | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=5) | st.sampled_from(["2026-01-01", "sev1", "high", "smb", "pro"]),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                           max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(__import__("engine.signals.catalog", fromlist=["x"]).EVENT_TYPES) + ["_envelope"]),
       st.data())
def test_the_compiled_validator_never_accepts_what_json_schema_refuses(name, data):
    import fastjsonschema

    from engine.signals.events import _fast, schema, validator
    props = schema(name).get("properties", {})
    value = data.draw(st.dictionaries(st.sampled_from(sorted(props) + ["extra"]), json_values, max_size=len(props) + 1))
    try:
        _fast(name)(value)
        fast_ok = True
    except fastjsonschema.JsonSchemaException:
        fast_ok = False
    if fast_ok:
        assert not list(validator(name).iter_errors(value)), value
