"""gunicorn's entry point inside the package (`postsale serve` runs `api.wsgi:app`), so an
installed postsale serves from any folder; the repository's wsgi.py re-exports it."""
from api import create_app

app = create_app()
app.extensions["postsale"].start_evaluations()
