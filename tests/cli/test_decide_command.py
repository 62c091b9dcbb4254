"""`postsale decide`: the same use case as POST /v1/decisions, from the command line."""
from __future__ import annotations

import json

from sqlalchemy import func, select

from adapters.store.db import make_engine, migrate, sessions
from adapters.store.models import Decision, Outbox
from cli.main import FAILED, LOAD_ERROR, OK, main


def test_decide_records_like_the_api_and_a_dry_run_records_nothing(tmp_path, monkeypatch, capsys, root):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("POSTSALE_INLINE_DISPATCH_MS", "0")
    monkeypatch.delenv("REDIS_URL", raising=False)
    facts = str(root / "examples" / "renewal-facts.json")
    assert main(["decide", facts, "--dry-run", "--json"]) == OK
    dry = json.loads(capsys.readouterr().out)
    assert dry["id"] is None and dry["dry_run"] is True and dry["offers"]
    assert main(["decide", facts, "--json"]) == OK
    body = json.loads(capsys.readouterr().out)
    factory = sessions(make_engine(url))
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 1
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.decision_id == body["id"])) == len(body["actions"])
    assert {k: body[k] for k in ("status", "offers", "escalations")} == {k: dry[k] for k in ("status", "offers", "escalations")}


def test_bad_facts_list_every_problem_by_path(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"account": {"arr": "x"}}))
    assert main(["decide", str(bad)]) == LOAD_ERROR
    err = capsys.readouterr().err
    assert "$.facts.account.arr: 'x' is not of type 'number'" in err and "$.facts: 'contract' is a required property" in err
    (tmp_path / "broken.json").write_text("{")
    assert main(["decide", str(tmp_path / "broken.json")]) == LOAD_ERROR
    assert FAILED != LOAD_ERROR
