"""`postsale rollout`: the same steps as /v1/rollouts, from the command line, with the actor
audited and nobody promoting their own candidate."""
from __future__ import annotations

import json
import shutil

from sqlalchemy import select

from adapters.store.db import make_engine, migrate, sessions
from adapters.store.models import AuditEntry
from cli.main import main
from cli.rollout import LOAD_ERROR, OK, REFUSED


def test_start_status_promote_rollback(tmp_path, monkeypatch, capsys, root):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrate(url)
    rules = tmp_path / "rules"
    shutil.copytree(root / "rules", rules)
    for name, value in (("DATABASE_URL", url), ("POSTSALE_RULES", str(rules)), ("POSTSALE_INLINE_DISPATCH_MS", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["rollout", "status", "renewal"]) == REFUSED, "nothing recorded yet"
    assert "no flow 'renewal' is recorded" in capsys.readouterr().err
    assert main(["decide", str(root / "examples" / "renewal-facts.json")]) == OK  # records the rules on disk
    capsys.readouterr()
    assert main(["rollout", "start", "renewal", "--mode", "canary", "--share", "0.25", "--actor", "alice"]) == REFUSED
    assert "already active" in capsys.readouterr().err
    src = rules / "renewal" / "pricing_quote.yaml"
    src.write_text(src.read_text().replace("- [mid_market, \">= 24\", 20]", "- [mid_market, \">= 24\", 16]"))
    assert main(["rollout", "start", "renewal", "--mode", "canary", "--share", "0.25", "--actor", "alice"]) == OK
    out = capsys.readouterr().out
    assert "canary for 25% of accounts" in out and "by alice" in out
    assert main(["rollout", "status", "renewal", "--json"]) == OK
    status = json.loads(capsys.readouterr().out)
    candidate = status["candidate"]["version"]
    assert status["candidate"]["share"] == 0.25 and candidate != status["active"]["version"]
    assert main(["rollout", "promote", "renewal", "--actor", "alice"]) == REFUSED
    assert "alice' started this candidate" in capsys.readouterr().err
    assert main(["rollout", "promote", "renewal", "--actor", "bob", "--json"]) == OK
    assert json.loads(capsys.readouterr().out)["active"]["version"] == candidate
    assert main(["rollout", "rollback", "renewal", "--actor", "bob"]) == OK
    assert f"rollback {status['active']['version']} by bob" in capsys.readouterr().out
    src.write_text(src.read_text().replace("- [mid_market, \">= 24\", 16]", "- [mid_market, \">= 24\""))
    assert main(["rollout", "start", "renewal", "--mode", "shadow"]) == LOAD_ERROR
    assert "does not compile" in capsys.readouterr().err
    with sessions(make_engine(url))() as s:
        steps = [(a.kind, a.actor) for a in s.scalars(select(AuditEntry).where(AuditEntry.kind.like("rollout.%"))
                                                       .order_by(AuditEntry.id))]
    assert steps == [("rollout.started", "alice"), ("rollout.promoted", "bob"), ("rollout.rolled_back", "bob")]
