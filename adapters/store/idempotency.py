"""Idempotency-Key semantics as payment APIs have them.

The database is the arbiter: the key's row is inserted in the same transaction as the
decision, under a primary key, so two concurrent requests with one key commit one decision
and the other replays it. With Redis configured, a completed response is also cached there
for the retention window and an in-flight marker makes a concurrent duplicate wait instead
of computing a decision that would be thrown away.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta

from sqlalchemy import delete

from .db import aware, now, transaction
from .models import IdempotencyKey

REPLAY, MISMATCH, NEW = "replay", "mismatch", "new"


def key_hash(api_key_id: str | None, header: str) -> str:
    return hashlib.sha256(f"{api_key_id or '-'}:{header}".encode()).hexdigest()


def request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, factory, ttl_seconds: int, redis=None):
        self.factory = factory
        self.ttl = ttl_seconds
        self.redis = redis

    def _rkey(self, key: str) -> str:
        return f"postsale:idem:{key}"

    def lookup(self, key: str, req_hash: str) -> tuple[str, tuple | None]:
        """(REPLAY, (status, body)) | (MISMATCH, None) | (NEW, None)."""
        if self.redis is not None:
            raw = self.redis.get(self._rkey(key))
            if raw:
                entry = json.loads(raw)
                if entry.get("state") == "done":
                    if entry["hash"] != req_hash:
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

    def wait_in_flight(self, key: str, req_hash: str, timeout: float = 10.0):
        """With Redis: claim the key, or wait for the request holding it to finish."""
        if self.redis is None:
            return None
        rkey = self._rkey(key)
        deadline = time.monotonic() + timeout
        while True:
            if self.redis.set(rkey, json.dumps({"state": "pending", "hash": req_hash}), nx=True, ex=60):
                return None
            raw = self.redis.get(rkey)
            entry = json.loads(raw) if raw else None
            if entry and entry.get("state") == "done":
                if entry["hash"] != req_hash:
                    return MISMATCH, None
                return REPLAY, (entry["status"], entry["body"])
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def release(self, key: str) -> None:
        if self.redis is not None:
            raw = self.redis.get(self._rkey(key))
            if raw and json.loads(raw).get("state") == "pending":
                self.redis.delete(self._rkey(key))

    def row(self, key: str, req_hash: str, status: int, body: dict, at) -> tuple:
        """The key's row (table, values), written with the decision (DecisionStore.record's extra)."""
        return IdempotencyKey.__table__, dict(key=key, request_hash=req_hash, state="done", response_status=status,
                                              response_body=body, created_at=at,
                                              expires_at=at + timedelta(seconds=self.ttl))

    def cache(self, key: str, req_hash: str, status: int, body: dict) -> None:
        if self.redis is not None:
            self.redis.set(self._rkey(key), json.dumps({"state": "done", "hash": req_hash, "status": status,
                                                        "body": body}), ex=self.ttl)

    def purge_expired(self) -> int:
        with transaction(self.factory) as s:
            return s.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now())).rowcount or 0

