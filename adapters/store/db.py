"""Database engine and sessions from a URL; the same code on SQLite and PostgreSQL."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import select
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import orjson
from sqlalchemy import create_engine, event, exc as sa_exc, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"


def normalise_url(url: str) -> str:
    """postgresql:// means psycopg 3 here (the driver we install)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, json_serializer=dumps)

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _):  # pragma: no cover - trivial
            conn.isolation_level = None  # SQLAlchemy's "begin" event below issues BEGIN itself
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            conn.create_function("postsale_sha256", 1, sha256_hex, deterministic=True)

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # pragma: no cover - trivial
            # one writer at a time, taken up front: no lock upgrades that deadlock under load
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # no pre-ping (a round trip per request): a connection the server closed is seen at
    # checkout without one (_closed_by_server), and an error that says the server went away
    # makes SQLAlchemy invalidate every connection the pool held before it
    engine = create_engine(url, pool_recycle=1800, pool_size=5, max_overflow=5, pool_timeout=CONNECT_TIMEOUT,
                           connect_args={"connect_timeout": CONNECT_TIMEOUT},
                           json_serializer=dumps)
    event.listen(engine, "checkout", _closed_by_server)
    return engine


CONNECT_TIMEOUT = 5


def sha256_hex(text_: str | None) -> str | None:
    """SQLite's postsale_sha256(): the audit chain's triggers digest rows with it (PostgreSQL
    has sha256() built in)."""
    return None if text_ is None else hashlib.sha256(text_.encode()).hexdigest()


def _closed_by_server(dbapi_conn, record, proxy) -> None:
    """An idle pooled connection has nothing to read; one the server closed (a restart, an
    administrator's terminate, an idle timeout) has its goodbye or EOF waiting in the socket.
    Such a connection is replaced before use: the pool connects afresh (once more, as
    SQLAlchemy retries a checkout that raises DisconnectionError)."""
    try:
        readable = select.select([dbapi_conn.fileno()], [], [], 0)[0]
    except Exception:  # noqa: BLE001 - closed or broken: fileno() itself fails
        readable = True
    if readable:
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


def unavailable(exc: BaseException) -> bool:
    """The database is away or cannot take work now (down, restarting, unreachable, its pool
    exhausted, SQLite locked past its busy timeout): worth a retry later, not a bug."""
    if isinstance(exc, sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
    return False


def dumps(value) -> str:
    """JSON text of a stored value: orjson (a decision's facts and result are serialised on
    every write, and the standard library took a tenth of a worker's time); what orjson
    refuses (integers beyond 64 bits, non-string keys) goes through the standard library."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker):
    with factory() as session, session.begin():
        yield session


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema up to an Alembic revision (the newest by default)."""
    from alembic import command
    _alembic(url, command.upgrade, revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema down to an Alembic revision."""
    from alembic import command
    _alembic(url, command.downgrade, revision)


def _alembic(url: str, step, revision: str) -> None:
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)
    finally:
        engine.dispose()


def ping(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness answers yes or no
        return False


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; every time stored here is UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def iso(dt: datetime | None) -> str | None:
    """A stored time as RFC 3339 in UTC with a Z (None stays None)."""
    dt = aware(dt)
    return None if dt is None else dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    """32 hex chars, time-ordered (48-bit milliseconds, then 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


__all__ = ["dumps", "make_engine", "sessions", "transaction", "migrate", "downgrade", "aware", "iso", "ping", "now",
           "new_id", "unavailable", "Session", "os"]
