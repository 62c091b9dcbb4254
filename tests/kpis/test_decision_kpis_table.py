"""decision_kpis: filled by a database trigger in the decision's INSERT, and backfilled by 0006."""
from __future__ import annotations

from sqlalchemy import select

from adapters.store.db import make_engine, migrate, sessions
from adapters.store.kpis import decision_kpis
from adapters.store.models import Decision

from . import golden
from .conftest import decide


def test_every_decision_gets_its_counts(client, factory):
    d = decide(client)
    with factory() as s:
        row = s.execute(select(decision_kpis).where(decision_kpis.c.decision_id == d["id"])).one()
    assert (row.offers, row.violations, row.blocked) == (len(d["offers"]), len(d["adjustments"]), len(d["blocked"]))
    ids = golden.load(factory, prefix="g")
    with factory() as s:
        rows = {r.decision_id: (r.offers, r.violations, r.blocked) for r in s.execute(select(decision_kpis))}
    assert rows[ids["d3"]] == (0, 2, 2) and rows[ids["d1"]] == (2, 1, 0) and rows[ids["d6"]] == (0, 0, 0)


def test_0006_counts_the_decisions_already_recorded(db_url):
    migrate(db_url, "0005")
    engine = make_engine(db_url)
    factory = sessions(engine)
    result = {"offers": [{"offer": "a"}], "adjustments": [{}, {}, {}], "blocked": [{}]}
    with factory() as s, s.begin():
        for n, r in enumerate([result, {"offers": None}]):
            # the columns of 0005 only (a Core insert names the columns it is given; the model has later ones)
            s.execute(Decision.__table__.insert().values(
                id=f"{n:032d}", created_at=golden.at("2026-01-01T00:00:00"), flow="renewal", ruleset_version="v",
                status="automatic", request_hash="0", facts={}, context={}, result=r))
    migrate(db_url, "head")
    with factory() as s:
        rows = {r.decision_id: (r.offers, r.violations, r.blocked) for r in s.execute(select(decision_kpis))}
    engine.dispose()
    assert rows == {f"{0:032d}": (1, 3, 1), f"{1:032d}": (0, 0, 0)}
