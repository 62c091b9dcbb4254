"""The offers' measures a recommendation counts into, and which of them it reports changed: only
a changed path makes the engine match again, so an identical value must not be reported."""
from __future__ import annotations

from engine.actions import _aggregator


def test_measures_and_changed_paths():
    add = _aggregator("upsell")
    wm, changed = {}, set()
    add(wm, 100, 0.1, changed)
    assert wm == {"offers.count": 1, "offers.value_total": 100, "offers.value_max": 100, "offers.discount_max": 0.1,
                  "offers.upsell.count": 1, "offers.upsell.value_total": 100, "offers.upsell.value_max": 100,
                  "offers.upsell.discount_max": 0.1}
    assert changed == set(wm)

    changed = set()
    add(wm, 0, 0.05, changed)  # nothing to add to the total, nothing above either maximum
    assert changed == {"offers.count", "offers.upsell.count"}
    assert wm["offers.count"] == 2 and wm["offers.value_total"] == 100 and wm["offers.discount_max"] == 0.1

    changed = set()
    add(wm, 100.0, 0.1, changed)  # equal maxima of another type keep the value held, unchanged
    assert type(wm["offers.value_max"]) is int and "offers.value_max" not in changed
    assert "offers.discount_max" not in changed
    assert wm["offers.value_total"] == 200.0 and type(wm["offers.value_total"]) is float
    assert "offers.value_total" in changed  # 100 -> 200.0

    changed = set()
    _aggregator("renewal")(wm, 250, 0.2, changed)
    assert wm["offers.value_max"] == 250 and wm["offers.discount_max"] == 0.2
    assert wm["offers.upsell.value_max"] == 100 and wm["offers.renewal.count"] == 1
    assert changed == {"offers.count", "offers.value_total", "offers.value_max", "offers.discount_max",
                       "offers.renewal.count", "offers.renewal.value_total", "offers.renewal.value_max",
                       "offers.renewal.discount_max"}
    assert abs(wm["offers.value_total"] - 450.0) < 1e-9
