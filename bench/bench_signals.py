"""Signals benchmark: event validation and fold per event, ingest throughput into the event store,
feature state size, and triggered evaluations per second — on SQLite and (when reachable)
PostgreSQL.

    .venv/bin/python bench/bench_signals.py [--accounts 200] [--quick]

Numbers go to stdout (markdown) and bench/signals_results.json; docs/signals.md quotes them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.store.db import make_engine, migrate, sessions  # noqa: E402
from adapters.store.events import EventStore  # noqa: E402
from engine.signals.events import parse_events  # noqa: E402
from engine.signals.features import empty_state, features, fold  # noqa: E402
from tests.signals.conftest import renewal_story  # noqa: E402


def story(n_accounts: int) -> list[dict]:
    out = []
    for i in range(n_accounts):
        out += renewal_story(f"bench-{i:05d}", incidents=i % 4, seats_used=100 + i % 30)
    return out


def per_event_us(fn, items, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - t)
    return best / len(items) * 1e6


def micro(raw: list[dict]) -> dict:
    parsed = parse_events(raw[:1000])
    now = datetime.now(timezone.utc)

    def parse(items):
        for i in range(0, len(items), 100):
            parse_events(items[i:i + 100])

    def fold_all(items):
        state = empty_state()
        for e in items:
            fold(state, e)

    state = empty_state()
    for e in parsed:
        fold(state, e)
    t = time.perf_counter()
    for _ in range(1000):
        features(state, "x", now)
    feats_us = (time.perf_counter() - t) * 1000
    return {"parse_us_per_event": round(per_event_us(parse, raw[:1000]), 1),
            "fold_us_per_event": round(per_event_us(fold_all, parsed), 1),
            "features_us": round(feats_us, 1)}


def ingest(url: str, raw: list[dict], batch: int) -> dict:
    migrate(url)
    engine = make_engine(url)
    from engine.signals.triggers import load_triggers
    store = EventStore(sessions(engine), triggers=load_triggers())
    events = [e for i in range(0, len(raw), 1000) for e in parse_events(raw[i:i + 1000])]
    lat = []
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        t = time.perf_counter()
        store.ingest(events[i:i + batch])
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    t = time.perf_counter()
    store.ingest(events[:batch])  # all duplicates
    dup_ms = (time.perf_counter() - t) * 1000
    sizes = [len(json.dumps(store.snapshot(a, use_cache=False).state)) for a in store.accounts()[:20]]
    engine.dispose()
    return {"events": len(events), "batch": batch, "events_per_s": round(len(events) / total),
            "batch_ms_p50": round(statistics.median(lat) * 1000, 2),
            "batch_ms_p99": round(sorted(lat)[int(len(lat) * 0.99) - 1] * 1000, 2),
            "duplicate_batch_ms": round(dup_ms, 2), "state_bytes_per_account": round(statistics.mean(sizes))}


def evaluations(url: str, n_accounts: int) -> dict:
    from config.settings import from_env
    from service.bootstrap import bootstrap
    from service.evaluate import Evaluator
    settings = replace(from_env({}), database_url=url, inline_dispatch_ms=0)
    rt = bootstrap(settings, redis=None)
    ev = Evaluator(rt, clock=lambda: datetime.now(timezone.utc) + timedelta(seconds=31))
    t = time.perf_counter()
    summary = ev.run_due(limit=n_accounts)
    total = time.perf_counter() - t
    rt.close()
    return {"evaluated": summary.processed, "decided": summary.outcomes["decided"],
            "per_s": round(summary.processed / total, 1), "ms_each": round(total / max(1, summary.processed) * 1000, 2)}


def pg_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        from tests.servers import postgres_schema_url
        return postgres_schema_url()
    except BaseException:  # noqa: BLE001 - skipped when PostgreSQL is not reachable
        print(f"PostgreSQL at {url} not reachable: skipped", file=sys.stderr)
        return None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    n = 20 if args.quick else args.accounts
    raw = story(n)
    results = {"accounts": n, "events": len(raw), "micro": micro(raw), "databases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", f"sqlite:///{tmp}/bench.db", None)]
        pg = pg_url()
        if pg is not None:
            targets.append(("postgresql", pg[0], pg[1]))
        for name, url, drop in targets:
            try:
                r = {"ingest_batch_100": ingest(url, raw, 100)}
                r["evaluations"] = evaluations(url, n)
                results["databases"][name] = r
            finally:
                if drop:
                    drop()
    results["max_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (ROOT / "bench" / "signals_results.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["micro"]
    print(f"## Signals ({n} accounts, {len(raw)} events)\n")
    print(f"- validate: {m['parse_us_per_event']} µs/event; fold: {m['fold_us_per_event']} µs/event; "
          f"features from state: {m['features_us']} µs")
    for name, r in results["databases"].items():
        i, e = r["ingest_batch_100"], r["evaluations"]
        print(f"- {name}: ingest {i['events_per_s']} events/s (batches of {i['batch']}: p50 {i['batch_ms_p50']} ms, "
              f"p99 {i['batch_ms_p99']} ms; an all-duplicate batch {i['duplicate_batch_ms']} ms); state "
              f"{i['state_bytes_per_account']} bytes/account; evaluations {e['per_s']}/s ({e['ms_each']} ms each, "
              f"{e['decided']} decided of {e['evaluated']})")
    print(f"- max RSS {results['max_rss_kib']} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
