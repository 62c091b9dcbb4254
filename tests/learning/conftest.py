from tests.api.conftest import app, client, rules_dir, settings, api_keys  # noqa: F401
