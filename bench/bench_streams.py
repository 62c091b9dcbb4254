"""Events ingested per second from the Redis stream by one and by two `postsale consume` processes
(docs/streams.md, "Throughput").

    .venv/bin/python bench/bench_streams.py                          # 20,000 events, PostgreSQL and SQLite
    .venv/bin/python bench/bench_streams.py --events 50000 --only postgresql --consumers 1,2,4
    .venv/bin/python bench/bench_streams.py --json var/bench_streams.json

Per run: a fresh database (a PostgreSQL schema of its own, or a new SQLite file), migrated; a
fresh stream holding `--events` events over `--accounts` accounts (usage, logins, tickets, CRM and
billing events mixed), published before the consumers start; then N consumer processes with
`--drain` (the shipped triggers loaded, so each batch also schedules the debounced evaluations).
The rate is the events stored divided by the time between the first and the last batch commit
(the events' received_at), so process start-up is not counted; the wall time is given too, and
the CPU time of the consumer processes per event (start-up included).
Redis (REDIS_URL / BENCH_REDIS_URL), PostgreSQL and the consumers share this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis as redis_lib  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from adapters.signals.streams import publish  # noqa: E402
from adapters.store.db import make_engine, migrate, sessions  # noqa: E402
from adapters.store.models import Event as EventRow  # noqa: E402
from engine.signals.events import parse_event  # noqa: E402

PG = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
BASE = datetime(2026, 6, 1, tzinfo=timezone.utc)


def make_events(n: int, accounts: int) -> list:
    out = []
    for i in range(n):
        kinds = [("product.usage", {"count": i % 11}), ("product.logins", {"count": 1 + i % 3}),
                 ("support.ticket_opened", {"ticket_id": f"T{i}", "severity": "high"}),
                 ("crm.account_updated", {"nps": i % 10, "seats": 10 + i % 50}),
                 ("billing.invoice_overdue", {"invoice_id": f"I{i}", "due_date": "2026-05-01"}),
                 ("product.seats_used", {"seats_used": i % 40})]
        type_, data = kinds[i % len(kinds)]
        at = (BASE + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
        out.append(parse_event({"id": f"b{i}", "type": type_, "account_id": f"acc{i % accounts}",
                                "occurred_at": at, "data": data}))
    return out


def database(kind: str):
    """(url, cleanup) of a fresh, migrated database."""
    if kind == "sqlite":
        d = tempfile.mkdtemp(prefix="bench-streams-")
        url = f"sqlite:///{d}/postsale.db"
        migrate(url)
        return url, lambda: shutil.rmtree(d, ignore_errors=True)
    import psycopg
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG}{'&' if '?' in PG else '?'}options=-csearch_path%3D{schema}"
    migrate(url)

    def drop():
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return url, drop


def run(kind: str, consumers: int, events: list, batch: int, accounts: int) -> dict:
    r = redis_lib.Redis.from_url(REDIS)
    stream = f"bench:events:{secrets.token_hex(4)}"
    url, drop = database(kind)
    try:
        publish(r, stream, events)
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS, "LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "cli", "consume", "--stream", stream,
                "--group", "bench", "--batch", str(batch), "--block-ms", "200", "--drain"]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        procs = [subprocess.Popen(args + ["--consumer", f"c{k}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for k in range(consumers)]
        outs = [p.communicate() for p in procs]
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
        for p, (_, err) in zip(procs, outs):
            if p.returncode:
                raise SystemExit(f"a consumer failed ({p.returncode}): {err}")
        engine = make_engine(url)
        with sessions(engine)() as s:
            n, first, last = s.execute(select(func.count(), func.min(EventRow.received_at),
                                              func.max(EventRow.received_at))).one()
        engine.dispose()
        if isinstance(first, str):
            first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
        span = (last - first).total_seconds()
        per = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
        return {"database": kind, "consumers": consumers, "batch": batch, "accounts": accounts, "events": n,
                "seconds": round(span, 3), "events_per_second": round(n / span) if span else None,
                "wall_seconds": round(wall, 2), "consumer_cpu_ms_per_event": round(1000 * cpu / n, 3) if n else None,
                "accepted_by_consumer": [x["accepted"] for x in per]}
    finally:
        r.delete(stream, stream + ":dead")
        drop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--accounts", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--consumers", default="1,2", help="comma-separated process counts (default 1,2)")
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    ap.add_argument("--repeat", type=int, default=1, help="runs per setting; the best rate is kept")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    events = make_events(args.events, args.accounts)
    results = []
    for kind in [args.only] if args.only else ["postgresql", "sqlite"]:
        for n in [int(x) for x in args.consumers.split(",")]:
            runs = [run(kind, n, events, args.batch, args.accounts) for _ in range(args.repeat)]
            best = max(runs, key=lambda x: x["events_per_second"] or 0)
            results.append(best)
            print(f"{kind:<10} {n} consumer{'s' if n > 1 else ' '}  batch {args.batch}: "
                  f"{best['events']} events in {best['seconds']:.2f}s = {best['events_per_second']} events/s "
                  f"(wall {best['wall_seconds']}s incl. start-up; consumer CPU {best['consumer_cpu_ms_per_event']} ms/event; "
                  f"per consumer {best['accepted_by_consumer']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                           "platform": platform.platform()},
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
