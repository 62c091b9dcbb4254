"""0005 and 0006 go down and back up, on SQLite and PostgreSQL, with the append-only triggers
of decisions and outcomes still in place afterwards."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from adapters.store.db import downgrade, make_engine, migrate

DECISION = ("INSERT INTO decisions (id, created_at, flow, ruleset_version, status, request_hash, facts, context, "
            "result) VALUES (:id, '2026-01-01 00:00:00', 'renewal', 'v1', 'automatic', 'h', '{}', '{}', :result)")


def _refused(engine, statement) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    except DBAPIError as exc:
        return "append-only" in str(exc)
    return False


def test_downgrades_and_upgrades_cycle(db_url):
    engine = make_engine(db_url)
    try:
        migrate(db_url, "head")
        with engine.begin() as conn:
            conn.execute(text(DECISION), {"id": "d1", "result": '{"offers": [{"offer": "a"}]}'})
        for down in ("0004", "0005", "0004"):
            downgrade(db_url, down)
            columns = {c["name"] for c in inspect(engine).get_columns("decisions")}
            assert "segment" not in columns if down == "0004" else "segment" in columns
            if down == "0005":
                assert {"offer_kind", "request_hash"}.isdisjoint(
                    c["name"] for c in inspect(engine).get_columns("outcomes"))
            migrate(db_url, "head")

        with engine.begin() as conn:
            conn.execute(text(DECISION), {"id": "d2", "result": '{"offers": [{"offer": "a"}, {"offer": "b"}]}'})
            conn.execute(text("INSERT INTO outcomes (id, decision_id, type, offer_kind, occurred_at, recorded_at, "
                              "detail) VALUES ('o1', 'd2', 'churned', NULL, '2026-01-02 00:00:00', "
                              "'2026-01-02 00:00:00', '{}')"))
            counts = dict(conn.execute(text("SELECT decision_id, offers FROM decision_kpis")).all())
        assert counts == {"d1": 1, "d2": 2}  # d1 backfilled on each upgrade, d2 by the trigger
        assert _refused(engine, "UPDATE decisions SET status = 'escalated'")
        assert _refused(engine, "DELETE FROM decisions")
        assert _refused(engine, "UPDATE outcomes SET type = 'renewed'")
        assert _refused(engine, "DELETE FROM outcomes")
    finally:
        engine.dispose()


def test_a_sqlite_older_than_3_35_is_told_so(tmp_path, monkeypatch):
    """A table copy would lose the triggers: the downgrade stops before it changes anything."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        migrate(url, "0006")
        from sqlalchemy.engine import Connection
        real = Connection.exec_driver_sql

        def old_sqlite(self, statement, *args, **kwargs):
            if statement == "SELECT sqlite_version()":
                return real(self, "SELECT '3.31.1'")
            return real(self, statement, *args, **kwargs)

        monkeypatch.setattr(Connection, "exec_driver_sql", old_sqlite)
        with pytest.raises(RuntimeError, match=r"SQLite 3\.35 or later .* this is 3\.31\.1"):
            downgrade(url, "0005")
        monkeypatch.undo()
        assert "decision_kpis" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
