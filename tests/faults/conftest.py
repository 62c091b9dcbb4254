"""Fault tests use the API suite's fixtures (settings, client) on each database."""
from tests.api.conftest import api_keys, client, rules_dir, settings  # noqa: F401
