"""Real PostgreSQL and Redis for tests: URLs from TEST_DATABASE_URL / TEST_REDIS_URL.

Outside CI a missing server skips with the reason; with CI=true it fails, never skips.
Each test session works in its own PostgreSQL schema, so runs never see each other's rows.
"""
from __future__ import annotations

import os
import re
import secrets

import pytest

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


def _unavailable(what: str, exc: Exception):
    msg = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " and CI=true: integration tests must run", pytrace=False)
    pytest.skip(msg)


def postgres_schema_url() -> tuple[str, callable]:
    """A URL whose search_path is a fresh schema, and a function that drops it."""
    import psycopg
    base = libpq_url(os.environ.get("TEST_DATABASE_URL", PG_DEFAULT))
    schema = f"t_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"PostgreSQL at {base}", exc)
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"

    def drop():
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return url, drop


def libpq_url(url: str) -> str:
    """The URL libpq understands: TEST_DATABASE_URL may be written as the service's own
    settings write it (`postgresql+psycopg://`), which psycopg.connect refuses."""
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)


def redis_client():
    import redis
    url = os.environ.get("TEST_REDIS_URL", REDIS_DEFAULT)
    client = redis.Redis.from_url(url, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Redis at {url}", exc)
    return url, client
