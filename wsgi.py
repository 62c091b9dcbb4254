"""gunicorn entry point from a checkout: `gunicorn -c config/gunicorn.conf.py wsgi:app`."""
from api.wsgi import app  # noqa: F401
