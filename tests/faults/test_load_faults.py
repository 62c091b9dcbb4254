"""The fault suite: `postsale serve` (gunicorn, 2 workers) on a private PostgreSQL and Redis,
under a bounded concurrent load of keyed decisions, while Redis is killed and frozen,
PostgreSQL restarted and stopped, and a worker SIGKILLed (once while PostgreSQL is away, so
its replacement starts without a database). Nothing may answer 500; every
acknowledged decision is in the database exactly once; the server recovers without a restart.
The long version with figures: bench/bench_faults.py (docs/reliability.md)."""
from __future__ import annotations

import time

import pytest

from adapters.store.db import migrate
from tests.e2e.conftest import Server

from .harness import kill_a_worker, run, stored, stored_ids
from .private import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.integration


class FaultServer(Server):
    def __init__(self, workdir, database_url, redis_url, workers=2):
        super().__init__(workdir, database_url, workers)
        self.redis_url = redis_url

    def env(self) -> dict:
        env = super().env()
        env.update({"REDIS_URL": self.redis_url, "POSTSALE_REDIS_TIMEOUT": "0.25"})
        return env


@pytest.fixture()
def stack(tmp_path):
    pg = PrivatePostgres().init().start()
    redis = PrivateRedis().start()
    url = pg.url
    migrate(url)
    srv = FaultServer(tmp_path, url, redis.url)
    try:
        srv.start()
        yield pg, redis, srv, url
    finally:
        srv.stop()
        redis.close()
        pg.close()


def test_faults_under_load_lose_nothing_and_answer_no_500(stack):
    pg, redis, srv, url = stack
    master = srv.proc.pid
    log = []

    def faults():
        steps = [
            ("warm", lambda: None, 1.5),
            ("redis killed", redis.kill, 2.0), ("redis back", redis.start, 1.5),
            ("redis frozen", redis.freeze, 2.0), ("redis thawed", redis.thaw, 1.5),
            ("postgres restarted", pg.restart, 2.0),
            ("postgres stopped", pg.stop, 1.0),
            ("worker SIGKILL while postgres is away", lambda: kill_a_worker(srv.worker_pids()), 2.0),
            ("postgres back", pg.start, 2.5),
            ("worker SIGKILL", lambda: kill_a_worker(srv.worker_pids()), 4.0),
        ]
        for name, act, hold in steps:
            act()
            log.append((name, time.monotonic()))
            time.sleep(hold)

    tally = run(srv.port, "e2e-decide", clients=4, faults=faults, tag="fault")
    assert tally.statuses[500] == 0, tally.statuses
    assert set(tally.statuses) <= {200, 201, 503}, tally.statuses
    assert tally.unacknowledged == [], tally.unacknowledged[:5]
    assert tally.statuses[201] > 50, tally.statuses
    counts = stored(url)
    assert max(counts.values()) == 1, [a for a, n in counts.items() if n > 1][:5]
    assert set(tally.acknowledged) == set(counts), "every acknowledged decision is stored, and only those"
    assert set(tally.acknowledged.values()) <= stored_ids(url)
    assert srv.proc.poll() is None and srv.proc.pid == master, "recovered without a restart"
    ready = srv.request("GET", "/readyz")
    assert ready.status == 200 and ready.json["redis"] == "ok", ready
    assert not [line for line in srv.errors_logged() if "unhandled error" in line], srv.errors_logged()[:5]
