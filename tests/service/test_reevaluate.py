""""Not yet" schedules the account's next evaluation: a triggered decision that says
`reevaluate` leaves a due evaluation for that day, in the decision's own transaction."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from adapters.store.models import Decision, DueEvaluation
from service.evaluate import Evaluator
from tests.api.conftest import app, client, rules_dir, settings  # noqa: F401 - fixtures
from tests.signals.conftest import KEYS, auth, renewal_story


def api_keys():  # noqa: D103 - the ingest keys of tests/signals
    return KEYS


import pytest  # noqa: E402

api_keys = pytest.fixture()(api_keys)


def test_a_decision_that_says_not_yet_is_evaluated_again_on_that_day(client, app):
    client.post("/v1/events", json=renewal_story("far-001", renewal_in_days=300), headers=auth())
    rt = app.extensions["postsale"]
    ahead = datetime.now(timezone.utc) + timedelta(seconds=31)
    summary = Evaluator(rt, worker_id="w1", clock=lambda: ahead).run_due()
    assert summary.outcomes["decided"] == 1
    with rt.factory() as s:
        [d] = s.scalars(select(Decision)).all()
        [due] = s.scalars(select(DueEvaluation)).all()
    assert d.result["reevaluate"]["at_days_to_renewal"] == 180 and d.result["offers"] == []
    waited = (due.due_at - d.created_at).total_seconds() / 86400
    assert due.account_id == "far-001" and 119.9 < waited < 120.1 and due.claimed_by is None
    # nothing is due before that day; on it, the account is decided again
    assert Evaluator(rt, worker_id="w1", clock=lambda: ahead + timedelta(days=119)).run_due().processed == 0
    assert Evaluator(rt, worker_id="w1", clock=lambda: ahead + timedelta(days=121)).run_due().processed == 1
