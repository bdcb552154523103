"""Alembic environment for relman: always given a live connection by release_manager.db.migrate."""
from alembic import context

from release_manager.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover
    raise SystemExit("relman's migrations run through `relman db upgrade`, not the alembic command")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
