"""Alembic environment: run with a connection handed over by adapters.store.db.migrate, or
from the settings' DATABASE_URL (config/settings.py; default: the embedded SQLite database)
when run as `alembic -c migrations/alembic.ini upgrade head`."""
from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from adapters.store.db import normalise_url
from adapters.store.models import Base
from config.settings import from_env
import adapters.tools.sandbox_models  # noqa: F401,E402 - the sandbox tables share Base (autogenerate sees them)

config = context.config
target_metadata = Base.metadata


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or normalise_url(from_env().database_url)
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
