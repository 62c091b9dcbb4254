"""The API under test on each database: SQLite (embedded default) and PostgreSQL."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from adapters.store.db import migrate
from config.settings import from_env
from tests.servers import postgres_schema_url

KEYS = {"k-decide": ["decide", "read"], "k-read": ["read"], "k-admin": ["admin", "read", "decide"],
        "k-other": ["decide", "read"]}


@pytest.fixture()
def rules_dir(tmp_path, root):
    dst = tmp_path / "rules"
    shutil.copytree(root / "rules", dst)
    return dst


@pytest.fixture()
def api_keys() -> dict:
    """The keys the app under test accepts; other suites override this fixture."""
    return KEYS


@pytest.fixture()
def settings(db_url, rules_dir, api_keys, models_dir, settings_overrides):
    migrate(db_url)
    base = from_env({"POSTSALE_API_KEYS": json.dumps(api_keys)})
    # no account held out unless a suite asks (tests/learning): suites test plans for given accounts
    return replace(base, database_url=db_url, rules_dir=rules_dir, models_dir=models_dir, max_body_bytes=64 * 1024,
                   **{"holdout_share": 0.0, **settings_overrides})


@pytest.fixture()
def app(settings):
    from api import create_app
    app = create_app(settings)
    yield app
    app.extensions["postsale"].close()


@pytest.fixture()
def client(app):
    return app.test_client()


def auth(key="k-decide", **headers):
    return {"Authorization": f"Bearer {key}", **headers}
