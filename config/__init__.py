"""Settings from the environment (12-factor), gunicorn config, catalog config."""
