"""Shared fixtures: the shipped flow, loaded once per session."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests decide for made-up accounts, often random ids: none is held out of automated offers by
# the holdout's hash unless a test asks for a holdout (tests/learning do), in this process and in
# every server and worker the tests start.
os.environ.setdefault("POSTSALE_HOLDOUT_SHARE", "0")

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


@pytest.fixture()
def settings_overrides() -> dict:
    """Further settings for the app under test (tests/api/conftest.py); suites override this."""
    return {}


@pytest.fixture()
def models_dir(root):
    """The models the app under test serves (settings `models_dir`): the shipped ones. A suite
    that needs a given plan to go out overrides this with `ceiling_models_dir`."""
    return root / "models"


@pytest.fixture()
def ceiling_models_dir(tmp_path):
    """A models directory whose response models send the renewal offer at its discount ceiling,
    on the longest term allowed, with the upsell (tests/choice_models.py)."""
    from tests.choice_models import CEILING, models_dir
    return models_dir(tmp_path / "models", **CEILING)
