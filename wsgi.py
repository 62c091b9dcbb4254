"""gunicorn entry point: `gunicorn -c config/gunicorn.conf.py wsgi:app`."""
from api import create_app

app = create_app()
app.extensions["postsale"].start_evaluations()
