"""A bounded concurrent load on a real `postsale serve` over private PostgreSQL and Redis,
with faults injected while it runs; shared by the fault suite (tests/faults/test_load_faults.py)
and its long version (bench/bench_faults.py).

Each client sends decisions with its own Idempotency-Key and account, and behaves as a caller
should: on a 503 or a broken connection it retries the same request with the same key until it
is acknowledged (201, or a 200 replay) or the run ends. At the end every acknowledged decision
must be in the database exactly once, and no answer may have been a 500.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FACTS = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    broken: int = 0                      # connection refused / reset / timed out
    acknowledged: dict = field(default_factory=dict)   # idempotency key -> decision id
    unacknowledged: list = field(default_factory=list)
    worst_ms: float = 0.0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int | None, ms: float) -> None:
        with self.lock:
            self.requests += 1
            self.worst_ms = max(self.worst_ms, ms)
            if status is None:
                self.broken += 1
            else:
                self.statuses[status] += 1


def _post(port: int, body: bytes, key: str, api_key: str, timeout: float):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/decisions", body=body, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {api_key}", "Idempotency-Key": key})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Retry-After"), resp.read()
    finally:
        conn.close()


def client_loop(port: int, api_key: str, prefix: str, stop: threading.Event, tally: Tally,
                timeout: float = 10.0, settle: float = 20.0) -> None:
    """Decide for new accounts until `stop`; the request under way when it is set is retried
    until acknowledged or `settle` more seconds pass."""
    n = 0
    while not stop.is_set():
        n += 1
        key = f"{prefix}-{n}"
        facts = {**FACTS, "account": {**FACTS["account"], "id": key}}
        body = json.dumps({"facts": facts}).encode()
        give_up = None
        while True:
            t0 = time.perf_counter()
            try:
                status, retry_after, payload = _post(port, body, key, api_key, timeout)
            except (OSError, http.client.HTTPException):
                status, retry_after, payload = None, None, b""
            tally.add(status, (time.perf_counter() - t0) * 1000)
            if status in (200, 201):
                with tally.lock:
                    tally.acknowledged[key] = json.loads(payload)["id"]
                break
            if status not in (None, 503):
                with tally.lock:
                    tally.unacknowledged.append((key, status, payload[:300]))
                break
            if stop.is_set():
                give_up = give_up or time.monotonic() + settle
                if time.monotonic() > give_up:
                    with tally.lock:
                        tally.unacknowledged.append((key, status, b"run ended"))
                    break
            time.sleep(min(float(retry_after or 0.1), 0.25))


def run(port: int, api_key: str, clients: int, faults, tag: str = "load") -> Tally:
    """`faults`: a callable run on this thread while the clients load the server."""
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=client_loop, args=(port, api_key, f"{tag}-{i}", stop, tally), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    try:
        faults()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    return tally


def stored(url: str) -> Counter:
    """account id -> decisions recorded for it."""
    import psycopg
    with psycopg.connect(url.split("?")[0], autocommit=True, options=_options(url)) as conn:
        return Counter(dict(conn.execute("SELECT account_id, count(*) FROM decisions GROUP BY account_id").fetchall()))


def stored_ids(url: str) -> set:
    import psycopg
    with psycopg.connect(url.split("?")[0], autocommit=True, options=_options(url)) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM decisions")}


def _options(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit
    return parse_qs(urlsplit(url).query).get("options", [""])[0]


def kill_a_worker(pids: list[int]) -> int:
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    return victim


__all__ = ["Tally", "run", "stored", "stored_ids", "kill_a_worker", "client_loop"]
