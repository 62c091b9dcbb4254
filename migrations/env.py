"""Alembic environment: run with a connection handed over by adapters.store.db.migrate, or
from the URL in DATABASE_URL when run as `alembic -c migrations/alembic.ini upgrade head`."""
from __future__ import annotations

import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from adapters.store.db import normalise_url
from adapters.store.models import Base
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
    url = config.get_main_option("sqlalchemy.url") or normalise_url(os.environ["DATABASE_URL"])
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
