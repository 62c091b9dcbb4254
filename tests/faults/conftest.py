"""Fault tests use the API suite's fixtures (settings, app, client) on each database."""
from tests.api.conftest import api_keys, app, client, rules_dir, settings  # noqa: F401
