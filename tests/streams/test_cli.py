"""`consume`, `events publish` and `events dead-letter` as an operator runs them."""
from __future__ import annotations

import io
import json
import signal
import sys
import threading

import pytest

from adapters.signals.streams import Consumer, publish
from cli.main import main
from engine.signals.events import parse_event

from .conftest import add, event, stored_ids
from .processes import commits, env, start, wait_for
from .test_consumer import Refusing


@pytest.fixture()
def redis_url(redis_env, monkeypatch):
    url = redis_env[0]
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.delenv("POSTSALE_EVENTS_STREAM", raising=False)
    return url


def entries(rds, stream) -> list[dict]:
    return [json.loads(f[b"event"]) for _, f in rds.xrange(stream)]


def test_publish_checks_every_event_first_and_publishes_none_when_one_is_bad(redis_url, rds, stream, tmp_path,
                                                                          capsys):
    f = tmp_path / "events.ndjson"
    f.write_text("\n".join([json.dumps(event(1)), json.dumps(event(8, data={"count": -1})), "",
                            "{oops", json.dumps(event(3))]) + "\n")
    assert main(["events", "publish", str(f), "--stream", stream]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{f}:2: $.data.count: ")
    assert err[1].startswith(f"{f}:4:2: not JSON")
    assert err[-1] == f"{f}: 2 problems; nothing published"
    assert rds.xlen(stream) == 0

    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"events": [event(1), event(2, type="nope")]}))
    assert main(["events", "publish", str(batch), "--stream", stream]) == 1
    assert capsys.readouterr().err.startswith(f"{batch}: $.events[1].type: unknown event type 'nope'")
    assert rds.xlen(stream) == 0

    f.write_text("\n".join(json.dumps(event(i)) for i in range(3)))
    assert main(["events", "publish", str(f), "--stream", stream]) == 0
    assert capsys.readouterr().out.startswith(f"published 3 events to {stream}")
    batch.write_text(json.dumps([event(3), event(4)]))
    assert main(["events", "publish", str(batch), "--stream", stream]) == 0
    assert [e["id"] for e in entries(rds, stream)] == [f"ev-{i}" for i in range(5)]


def test_publish_reads_stdin(redis_url, rds, stream, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event(7))))
    assert main(["events", "publish", "-", "--stream", stream]) == 0
    assert "published 1 event to" in capsys.readouterr().out
    assert entries(rds, stream)[0] == parse_event(event(7)).as_json()


def test_dead_letter_list_and_redrive_after_the_fix(redis_url, rds, stream, factory, store, capsys):
    for i in range(5):
        add(rds, stream, event(i))
    broken = Consumer(rds, Refusing(factory), stream=stream, group="g", block_ms=0)
    broken.ensure_group()
    broken.run(threading.Event(), drain=True, max_seconds=10)
    assert main(["events", "dead-letter", "list", "--stream", stream]) == 0
    out = capsys.readouterr().out
    assert "ingest-error" in out and "cannot fold ev-3" in out and f"1 entry in {stream}:dead" in out
    assert main(["events", "dead-letter", "list", "--stream", stream, "--json"]) == 0
    (parked,) = json.loads(capsys.readouterr().out)["entries"]
    assert json.loads(parked["fields"]["event"])["id"] == "ev-3" and parked["delivered"] == 1

    assert main(["events", "dead-letter", "redrive", "--stream", stream]) == 1  # names nothing
    assert main(["events", "dead-letter", "redrive", "0-1", "--stream", stream]) == 1
    assert "0-1: no such dead-letter entry" in capsys.readouterr().out
    assert main(["events", "dead-letter", "redrive", parked["id"], "--stream", stream]) == 0
    assert "re-drove 1 entry" in capsys.readouterr().out
    assert rds.xlen(stream + ":dead") == 0 and entries(rds, stream)[-1]["id"] == "ev-3"

    fixed = Consumer(rds, store, stream=stream, group="g", block_ms=0)  # the consumer is fixed
    fixed.run(threading.Event(), drain=True, max_seconds=10)
    assert sorted(stored_ids(factory)) == [f"ev-{i}" for i in range(5)]


def test_redrive_all(redis_url, rds, stream, factory, store, capsys):
    add(rds, stream, event(1, occurred_at="2026-06-01T00:00:00"))  # no offset: a producer bug
    add(rds, stream, "[]")
    c = Consumer(rds, store, stream=stream, group="g", block_ms=0)
    c.ensure_group()
    c.run(threading.Event(), drain=True, max_seconds=10)
    assert rds.xlen(stream + ":dead") == 2
    assert main(["events", "dead-letter", "redrive", "--all", "--stream", stream]) == 0
    assert "re-drove 2 entries" in capsys.readouterr().out
    assert rds.xlen(stream + ":dead") == 0 and rds.xlen(stream) == 4


def test_consume_once_prints_a_summary(redis_url, rds, stream, db_url, factory, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    publish(rds, stream, [parse_event(event(i)) for i in range(3)])
    add(rds, stream, "nope")
    before = signal.getsignal(signal.SIGINT)
    assert main(["consume", "--stream", stream, "--group", "g", "--once"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: summary[k] for k in ("accepted", "duplicates", "dead_lettered", "reclaimed", "acked")} == \
        {"accepted": 3, "duplicates": 0, "dead_lettered": 1, "reclaimed": 0, "acked": 4}
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert rds.xinfo_consumers(stream, "g") == []  # a clean stop leaves the group


@pytest.mark.parametrize("setting, message", [
    ({"REDIS_URL": "redis://127.0.0.1:9/0"}, "postsale: Redis at redis://127.0.0.1:9/0 is not reachable"),
    ({"REDIS_URL": ""}, "postsale: REDIS_URL is not set"),
    ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x?connect_timeout=1"}, "postsale: the database is not usable"),
    ({"DATABASE_URL": "sqlite:///{tmp}/empty.db"}, "run `postsale migrate` first"),
])
def test_unreachable_servers_are_one_line_and_exit_1(redis_url, stream, tmp_path, monkeypatch, capsys, setting,
                                                     message):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/never.db")
    for k, v in setting.items():
        monkeypatch.setenv(k, v.format(tmp=tmp_path))
    assert main(["consume", "--stream", stream, "--once"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_sigterm_finishes_the_batch_in_hand(redis_env, stream, db_url, factory, tmp_path):
    redis_url, rds = redis_env
    publish(rds, stream, [parse_event(event(i)) for i in range(200)])
    progress = tmp_path / "commits"
    p = start(["consume", "--stream", stream, "--group", "g", "--batch", "10", "--consumer", "c1"],
              env(db_url, redis_url, SLOW_INGEST_SECONDS=0.5, SLOW_INGEST_PROGRESS=progress), slow=True)
    try:
        wait_for(lambda: commits(progress) >= 2, 30, "two commits", p)
        p.send_signal(signal.SIGTERM)  # during the pause after a commit, before its acknowledgement
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["accepted"] == summary["acked"] == len(stored_ids(factory)) >= 20
    assert rds.xpending(stream, "g")["pending"] == 0 and "Traceback" not in err
