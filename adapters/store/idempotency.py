"""Idempotency-Key semantics as payment APIs have them.

The database is the arbiter: the key's row is inserted in the same transaction as the
decision, under a primary key, so two concurrent requests with one key commit one decision
and the other replays it. With Redis configured, a completed response is also cached there
for the retention window and an in-flight marker makes a concurrent duplicate wait instead
of computing a decision that would be thrown away.

Redis is only a cache here (adapters/store/cache.py): when it is away every answer comes from
the database. A marker carries its request's token and is removed only by that request (or
overwritten by its stored response), whatever way the request ends; one left by a process that
died expires after MARKER_SECONDS, and nobody waits for one longer than WAIT_SECONDS before
deciding anyway (the key's row still admits one decision).
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import delete

from .cache import RedisGuard
from .db import aware, now, transaction
from .models import IdempotencyKey

REPLAY, MISMATCH, NEW = "replay", "mismatch", "new"
MARKER_SECONDS = 10
WAIT_SECONDS = 2.0
# delete the marker only if it is still this request's own
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def key_hash(api_key_id: str | None, header: str) -> str:
    return hashlib.sha256(f"{api_key_id or '-'}:{header}".encode()).hexdigest()


def request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, factory, ttl_seconds: int, redis=None, guard: RedisGuard | None = None):
        self.factory = factory
        self.ttl = ttl_seconds
        self.redis = redis
        self.guard = guard or RedisGuard(redis, "idempotency")
        self._release = redis.register_script(RELEASE) if redis is not None else None
        self._claims = threading.local()  # key -> the marker this thread's request set

    def _held(self) -> dict:
        held = getattr(self._claims, "held", None)
        if held is None:
            held = self._claims.held = {}
        return held

    def _rkey(self, key: str) -> str:
        return f"postsale:idem:{key}"

    def lookup(self, key: str, req_hash: str) -> tuple[str, tuple | None]:
        """(REPLAY, (status, body)) | (MISMATCH, None) | (NEW, None)."""
        entry = self._cached(key)
        if entry is not None and entry.get("state") == "done":
            if entry.get("hash") != req_hash:
                return MISMATCH, None
            return REPLAY, (entry["status"], entry["body"])
        with self.factory() as s:
            row = s.get(IdempotencyKey, key)
        if row is None:
            return NEW, None
        if aware(row.expires_at) <= now():
            with transaction(self.factory) as tx:
                tx.execute(delete(IdempotencyKey).where(IdempotencyKey.key == key,
                                                        IdempotencyKey.expires_at <= now()))
            return NEW, None
        if row.request_hash != req_hash:
            return MISMATCH, None
        return REPLAY, (row.response_status, row.response_body)

    def _cached(self, key: str) -> dict | None:
        raw = self.guard.call("get", self.redis.get, self._rkey(key)) if self.redis is not None else None
        if not raw:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        return entry if isinstance(entry, dict) else None

    def wait_in_flight(self, key: str, req_hash: str, timeout: float = WAIT_SECONDS):
        """With Redis: claim the key for this request, or wait (at most `timeout`) for the
        request holding it to finish and replay its answer; None: go ahead and decide."""
        if self.redis is None:
            return None
        rkey = self._rkey(key)
        marker = json.dumps({"state": "pending", "hash": req_hash, "token": secrets.token_hex(8)})
        deadline = time.monotonic() + timeout
        while True:
            claimed = self.guard.call("set", self.redis.set, rkey, marker, nx=True, ex=MARKER_SECONDS)
            if claimed:
                self._held()[key] = marker
                return None
            if not self.guard.usable():
                return None
            entry = self._cached(key)
            if entry and entry.get("state") == "done":
                if entry.get("hash") != req_hash:
                    return MISMATCH, None
                return REPLAY, (entry["status"], entry["body"])
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def release(self, key: str) -> None:
        """Remove this request's marker if it still stands (the request ended without storing a
        response); never raises."""
        marker = self._held().pop(key, None)
        if marker is not None:
            self.guard.call("release", self._release, keys=[self._rkey(key)], args=[marker])

    def row(self, key: str, req_hash: str, status: int, body: dict, at) -> tuple:
        """The key's row (table, values), written with the decision (DecisionStore.record's extra)."""
        return IdempotencyKey.__table__, dict(key=key, request_hash=req_hash, state="done", response_status=status,
                                              response_body=body, created_at=at,
                                              expires_at=at + timedelta(seconds=self.ttl))

    def cache(self, key: str, req_hash: str, status: int, body: dict) -> None:
        """Keep a recorded response in Redis too (replacing this request's marker). The decision
        is already committed: a Redis failure here is logged and counted, never raised."""
        if self.redis is None:
            return
        stored = self.guard.call("set", self.redis.set, self._rkey(key), json.dumps(
            {"state": "done", "hash": req_hash, "status": status, "body": body}), ex=self.ttl)
        if stored:
            self._held().pop(key, None)

    def purge_expired(self) -> int:
        with transaction(self.factory) as s:
            return s.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now())).rowcount or 0

