"""The floor bench/http_bench.py measures postsale against: the least a gunicorn + Flask service can do
for the same POST /v1/decisions request, served with the same config/gunicorn.conf.py.

FLOOR_MODE chooses what a request does:

- `pg`: parse the JSON body (`request.get_json`) and commit ONE `INSERT` of it (an id and the body as
  JSON text) on PostgreSQL (FLOOR_DSN, table FLOOR_TABLE); one psycopg 3 connection per worker, opened
  after the fork on the first request, autocommit off, one commit per request; answers 201 {"id": ...}.
- `sqlite`: the same INSERT into the SQLite file FLOOR_SQLITE, with the connection settings
  adapters/store/db.py uses (WAL, synchronous=NORMAL, foreign_keys, busy_timeout 30 s, BEGIN IMMEDIATE).
- `dry`: parse the body and answer 200 with a small JSON object; no database.

No API key check, no logging, no metrics, no rules: whatever postsale spends beyond this is its own cost.
The table is created on first use (IF NOT EXISTS, serialised between workers) so the app runs on its own:

    FLOOR_MODE=dry .venv/bin/gunicorn -c config/gunicorn.conf.py bench.floor_app:app
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time

from flask import Flask, jsonify, request

MODE = os.environ.get("FLOOR_MODE", "dry")
TABLE = os.environ.get("FLOOR_TABLE", "floor_requests")
if MODE not in ("pg", "sqlite", "dry"):
    raise RuntimeError(f"FLOOR_MODE must be pg, sqlite or dry, not {MODE!r}")
if not TABLE.isidentifier():
    raise RuntimeError(f"FLOOR_TABLE must be a plain identifier, not {TABLE!r}")

INSERT_PG = f"INSERT INTO {TABLE} (id, body) VALUES (%s, %s)"
INSERT_SQLITE = f"INSERT INTO {TABLE} (id, body) VALUES (?, ?)"

app = Flask(__name__)
_conn = None


def new_id() -> str:
    """The same id shape as adapters/store/db.py (time-ordered hex), without importing the project."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def _connect_pg():
    import psycopg
    conn = psycopg.connect(os.environ["FLOOR_DSN"], autocommit=False, connect_timeout=10)
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))  # concurrent CREATEs can collide
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, body json NOT NULL)")
    conn.commit()
    return conn


def _connect_sqlite():
    conn = sqlite3.connect(os.environ["FLOOR_SQLITE"], timeout=30, check_same_thread=False, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
    conn.execute("COMMIT")
    return conn


def connection():
    """This worker's connection, opened lazily: gunicorn has no preload here, so always after the fork."""
    global _conn
    if _conn is None:
        _conn = _connect_pg() if MODE == "pg" else _connect_sqlite()
    return _conn


def _insert(did: str, text: str) -> None:
    global _conn
    conn = connection()
    try:
        if MODE == "pg":
            conn.execute(INSERT_PG, (did, text))
            conn.commit()
        else:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT_SQLITE, (did, text))
            conn.execute("COMMIT")
    except Exception:
        try:
            conn.rollback() if MODE == "pg" else conn.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - a broken connection is replaced on the next request
            pass
        if getattr(conn, "closed", False):
            _conn = None
        raise


@app.post("/v1/decisions")
def decide():
    body = request.get_json()
    if MODE == "dry":
        return jsonify(status="ok", dry_run=True, keys=len(body))
    did = new_id()
    _insert(did, json.dumps(body))
    return jsonify(id=did), 201


@app.get("/readyz")
def ready():
    return jsonify(status="ok")
