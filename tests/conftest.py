"""Shared fixtures: the shipped flow, loaded once per session."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each storage test runs on the embedded SQLite and on PostgreSQL (its own schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'postsale.db'}"
        return
    from tests.servers import postgres_schema_url
    url, drop = postgres_schema_url()
    yield url
    drop()


@pytest.fixture()
def factory(db_url):
    """A session factory on a migrated database."""
    from adapters.store.db import make_engine, migrate, sessions
    migrate(db_url)
    engine = make_engine(db_url)
    yield sessions(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def renewal_flow():
    from engine.language.flows import load_flow_dir
    return load_flow_dir(ROOT / "rules" / "renewal")


@pytest.fixture(scope="session")
def example_facts() -> dict:
    return json.loads((ROOT / "examples" / "renewal-facts.json").read_text())
