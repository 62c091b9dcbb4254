"""The fault suite's long version: `postsale serve` on a private PostgreSQL and Redis under
`--clients` concurrent callers (unique Idempotency-Key each, retrying 503s and broken
connections with the same key), while every fault class is injected `--rounds` times. Prints
and writes (bench/faults_results.json) the answers by status, acknowledged / stored / lost /
duplicated decisions and the slowest answer; docs/reliability.md quotes a run.

    .venv/bin/python bench/bench_faults.py --clients 8 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.store.db import migrate  # noqa: E402
from tests.faults.harness import kill_a_worker, run, stored, stored_ids  # noqa: E402
from tests.faults.private import PrivatePostgres, PrivateRedis  # noqa: E402
from tests.faults.test_load_faults import FaultServer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--hold", type=float, default=3.0, help="seconds each fault lasts")
    ap.add_argument("--out", default=str(ROOT / "bench" / "faults_results.json"))
    args = ap.parse_args(argv)
    pg, redis = PrivatePostgres().init().start(), PrivateRedis().start()
    migrate(pg.url)
    srv = FaultServer(Path(tempfile.mkdtemp(prefix="bench-faults-")), pg.url, redis.url, workers=args.workers)
    srv.start()
    timeline = []
    t0 = time.monotonic()
    hold = args.hold

    def faults():
        steps = [("warm", lambda: None, hold)]
        for _ in range(args.rounds):
            steps += [("redis killed", redis.kill, hold), ("redis back", redis.start, hold),
                      ("redis frozen", redis.freeze, hold), ("redis thawed", redis.thaw, hold),
                      ("postgres restarted (fast)", pg.restart, hold),
                      ("postgres restarted (immediate)", lambda: pg.restart("immediate"), hold),
                      ("postgres stopped", pg.stop, hold), ("postgres back", pg.start, hold),
                      ("worker SIGKILL", lambda: kill_a_worker(srv.worker_pids()), hold * 2)]
        for name, act, wait in steps:
            act()
            timeline.append((round(time.monotonic() - t0, 2), name))
            time.sleep(wait)

    try:
        tally = run(srv.port, "e2e-decide", clients=args.clients, faults=faults, tag="bench")
        counts = stored(pg.url)
        ids = stored_ids(pg.url)
        result = {
            "clients": args.clients, "rounds": args.rounds, "workers": args.workers, "hold_s": hold,
            "seconds": round(time.monotonic() - t0, 1), "requests": tally.requests,
            "statuses": dict(sorted(tally.statuses.items())), "broken_connections": tally.broken,
            "acknowledged": len(tally.acknowledged), "stored": sum(counts.values()),
            "lost": len(set(tally.acknowledged.values()) - ids),
            "duplicated": sum(n - 1 for n in counts.values() if n > 1),
            "stored_unacknowledged": len(set(counts) - set(tally.acknowledged)),
            "unacknowledged": len(tally.unacknowledged), "slowest_ms": round(tally.worst_ms, 1),
            "server_restarted": srv.proc.poll() is not None,
            "unhandled_errors_logged": sum("unhandled error" in line for line in srv.errors_logged()),
            "timeline": timeline,
        }
    finally:
        srv.stop()
        redis.close()
        pg.close()
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["statuses"].get(500, 0) == 0 and not result["lost"] and not result["duplicated"] else 1


if __name__ == "__main__":
    sys.exit(main())
