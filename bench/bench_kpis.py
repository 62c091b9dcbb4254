"""KPI query time over a generated book, on SQLite and PostgreSQL (docs/kpis.md, "How it scales").

    .venv/bin/python bench/bench_kpis.py                      # 100,000 decisions on both databases
    .venv/bin/python bench/bench_kpis.py --decisions 20000 --only sqlite
    .venv/bin/python bench/bench_kpis.py --json var/bench_kpis.json

The book: `--decisions` decisions over 180 days (flows renewal and expansion, three segments, three
ruleset versions); each stores a real decision result of the shipped renewal flow (made once
per fact set by the engine, with its trace: about 4 to 5.6 KB of JSON); 30 % triggered (signal and
newest event times), latency and CPU on all; a quarter held for approval (60 % approved, 20 %
rejected, 20 % pending); two outbox rows each (done, dead, retry, cancelled); about one outcome
each (renewed, churned, expanded, an offer accepted or declined).

Timed, after one warm-up, median of `--repeat` runs, each in a new session (adapters.store.kpis.compute,
the code GET /v1/kpis runs): everything ungrouped; grouped by flow and segment; by week; the
last 7 days only (what the Prometheus collector's 30-day window costs scales the same way); and,
to show where the time goes, the decisions-only statement on columns only, with the guardrail
violations from decision_kpis (filled by a trigger at insert, what compute() reads), and with
them parsed from every decision's result JSON (what it would cost without that table). PostgreSQL gets ANALYZE after the load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, literal_column, select, text  # noqa: E402

from adapters.store.db import make_engine, migrate, sessions  # noqa: E402
from adapters.store.kpis import KpiQuery, _decisions, _Dialect, compute, count  # noqa: E402
from adapters.store.models import Approval, Decision, Outbox  # noqa: E402
from adapters.store.outcomes import outcomes  # noqa: E402

PG = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
END = datetime(2026, 6, 1, tzinfo=timezone.utc)


def real_results() -> list[dict]:
    """Decision results of the shipped flow, with their traces, for a few accounts."""
    import copy

    from engine.decide import Decider
    from engine.language.flows import load_flow_dir
    base = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())
    high = json.loads((ROOT / "tests" / "golden" / "high-risk-enterprise.facts.json").read_text())
    variants = [base, high]
    for requested, overdue in ((27, 0), (10, 45), (0, 0)):
        f = copy.deepcopy(base)
        f["contract"]["requested_discount"] = requested
        f["billing"]["days_overdue"] = overdue
        variants.append(f)
    d = Decider(load_flow_dir(ROOT / "rules" / "renewal"), "reference")
    try:
        return [d.decide(f) for f in variants]
    finally:
        d.close()


def generate(factory, n: int, seed: int = 2026) -> dict:
    rnd = random.Random(seed)
    results = real_results()
    sizes = [len(json.dumps(r)) for r in results]
    batch = 2000
    counts = {"decisions": 0, "approvals": 0, "outbox": 0, "outcomes": 0}
    for start in range(0, n, batch):
        ds, aps, obs, ocs = [], [], [], []
        for i in range(start, min(n, start + batch)):
            did = f"{i:012x}{secrets.token_hex(10)}"
            created = END - timedelta(seconds=rnd.uniform(0, 180 * 86400))
            result = results[i % len(results)]
            held = rnd.random() < 0.25
            status = "approval_required" if held else rnd.choice(["automatic"] * 6 + ["escalated", "no_action"])
            triggered = rnd.random() < 0.3
            signal = created - timedelta(seconds=rnd.uniform(60, 7200)) if triggered else None
            ds.append({"id": did, "created_at": created, "flow": "renewal" if i % 5 else "expansion",
                       "ruleset_version": f"v{i % 3}", "account_id": f"acct-{i % 20000}", "status": status,
                       "api_key_id": "bench", "request_hash": "0" * 64, "facts": {}, "context": {},
                       "result": result, "segment": ("smb", "mid_market", "enterprise")[i % 3],
                       "trigger": "renewal_window" if triggered else None, "signal_at": signal,
                       "newest_event_at": created - timedelta(seconds=rnd.uniform(1, 600)) if triggered else None,
                       "latency_ms": rnd.lognormvariate(2.5, 0.4), "cpu_ms": rnd.lognormvariate(1.5, 0.3)})
            state = None
            if held:
                state = rnd.choices(["approved", "rejected", "pending"], [6, 2, 2])[0]
                aps.append({"id": f"{i:012x}{secrets.token_hex(10)}", "decision_id": did, "state": state,
                            "queues": ["deal_desk"], "reasons": [], "proposed": {}, "requested_by": "bench",
                            "created_at": created, "expires_at": created + timedelta(hours=72),
                            "decided_by": None if state == "pending" else "desk",
                            "decided_at": None if state == "pending" else created + timedelta(hours=rnd.uniform(1, 48))})
            for step in (1, 2):
                if state in ("rejected",):
                    ob_state = "cancelled"
                elif state == "pending":
                    ob_state = "awaiting_approval"
                else:
                    ob_state = rnd.choices(["done", "dead", "retry"], [90, 7, 3])[0]
                obs.append({"decision_id": did, "step": step, "action_type": "create_quote", "params": {},
                            "idempotency_key": f"{did}:{step}", "state": ob_state, "created_at": created,
                            "attempts": 1})
            kind = rnd.choices(["renewed", "churned", "expanded", "offer_accepted", "offer_declined", None],
                               [40, 15, 15, 10, 10, 10])[0]
            if kind is not None:
                offer = result["offers"][-1] if result["offers"] else None
                if kind.startswith("offer_") and offer is None:
                    kind = "churned"
                ocs.append({"id": f"o-{did}", "decision_id": did, "type": kind,
                            "amount": rnd.uniform(5000, 200000) if kind in ("renewed", "expanded") else None,
                            "offer": offer["offer"] if kind.startswith("offer_") else None,
                            "offer_kind": offer["kind"] if kind.startswith("offer_") else None,
                            "occurred_at": created + timedelta(days=30), "recorded_at": created + timedelta(days=30),
                            "api_key_id": "bench", "request_hash": "0" * 64, "detail": {}})
        with factory() as s, s.begin():
            s.execute(insert(Decision.__table__), ds)
            if aps:
                s.execute(insert(Approval.__table__), aps)
            s.execute(insert(Outbox.__table__), obs)
            if ocs:
                s.execute(insert(outcomes), ocs)
        for k, rows in (("decisions", ds), ("approvals", aps), ("outbox", obs), ("outcomes", ocs)):
            counts[k] += len(rows)
    counts["result_json_bytes"] = f"{min(sizes)}-{max(sizes)}"
    return counts


CASES = {
    "everything, ungrouped": KpiQuery(),
    "by flow and segment": KpiQuery(group_by=("flow", "segment")),
    "by week": KpiQuery(group_by=("period",), period="week"),
    "last 7 days": KpiQuery(start=END - timedelta(days=7), end=END),
    "last 30 days by flow and segment (the collector)": KpiQuery(start=END - timedelta(days=30), end=END,
                                                                 group_by=("flow", "segment")),
}


def timed(fn, repeat: int) -> float:
    fn()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000


def measure(factory, repeat: int) -> dict:
    out = {}
    for name, q in CASES.items():
        def run(q=q):
            with factory() as s:
                compute(s, q)
        out[name] = round(timed(run, repeat), 1)

    def decisions_only(part: str):
        def run():
            with factory() as s:
                dia = _Dialect(s.get_bind().dialect.name)
                if part == "columns":
                    d = _decisions(KpiQuery(), dia, Decision.cpu_ms.label("v"))
                elif part == "counts":
                    d = _decisions(KpiQuery(), dia, count("violations").label("v"), counts=True)
                else:  # what reading the result JSON of every decision costs
                    v = (func.json_array_length(literal_column("decisions.result -> 'adjustments'")) if dia.pg
                         else func.json_array_length(Decision.result, "$.adjustments"))
                    d = _decisions(KpiQuery(), dia, v.label("v"))
                s.execute(select(func.count(), func.sum(d.c.v))).one()
        return run
    out["decisions statement, columns only"] = round(timed(decisions_only("columns"), repeat), 1)
    out["decisions statement, violations from decision_kpis"] = round(timed(decisions_only("counts"), repeat), 1)
    out["decisions statement, violations parsed from the result JSON"] = round(timed(decisions_only("json"), repeat), 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    report = {"decisions": args.decisions, "python": platform.python_version(), "cpus": os.cpu_count(),
              "databases": {}}
    for name in ("sqlite", "postgresql"):
        if args.only and args.only != name:
            continue
        drop = None
        if name == "sqlite":
            tmp = tempfile.mkdtemp(prefix="bench_kpis_")
            url = f"sqlite:///{tmp}/kpis.db"
        else:
            import psycopg
            schema = f"bench_kpis_{secrets.token_hex(4)}"
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            url = f"{PG}{'&' if '?' in PG else '?'}options=-csearch_path%3D{schema}"

            def drop(schema=schema):
                with psycopg.connect(PG, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
        try:
            migrate(url)
            engine = make_engine(url)
            factory = sessions(engine)
            t = time.perf_counter()
            counts = generate(factory, args.decisions)
            load_s = time.perf_counter() - t
            with engine.connect() as conn:
                if name == "postgresql":
                    conn.execute(text("ANALYZE"))
                    conn.commit()
                    version = conn.execute(text("SHOW server_version")).scalar()
                else:
                    conn.exec_driver_sql("ANALYZE")
                    version = conn.exec_driver_sql("select sqlite_version()").scalar()
            print(f"{name} {version}: {counts} loaded in {load_s:.0f} s", file=sys.stderr)
            timings = measure(factory, args.repeat)
            report["databases"][name] = {"version": version, "rows": counts, "ms": timings}
            engine.dispose()
        finally:
            if drop is not None:
                drop()
    print(f"KPI query time, {args.decisions:,} decisions (median of {args.repeat}, ms)\n")
    names = list(next(iter(report["databases"].values()))["ms"]) if report["databases"] else []
    dbs = list(report["databases"])
    print("| query | " + " | ".join(f"{d} {report['databases'][d]['version']}" for d in dbs) + " |")
    print("|---|" + "---:|" * len(dbs))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{report['databases'][d]['ms'][n]:,.1f}" for d in dbs) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
