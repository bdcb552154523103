"""Alembic, run from inside relman: the migrations ship in release_manager/db/migrations, so no
alembic.ini is needed anywhere. `relman db upgrade` calls `upgrade`; every other database command
calls `Database.require_schema`, which uses `status` to refuse a database that is not at our head.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    top = ScriptDirectory.from_config(config()).get_current_head()
    assert top, "the migrations folder has a head"
    return top


@dataclass
class Status:
    url: str
    state: str                 # empty | unversioned | behind | current | ahead
    current: Optional[str]
    head: str
    advice: str

    def as_dict(self):
        return dict(self.__dict__)


def status(db) -> Status:
    script = ScriptDirectory.from_config(config())
    top = head()
    if not db.exists():
        return Status(db.masked_url, "empty", None, top,
                      f"the database {db.masked_url} does not exist yet: run `relman db upgrade` to create it")
    with db.connection() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
    where = f"the database {db.masked_url}"
    if current is None:
        if tables:
            return Status(db.masked_url, "unversioned", None, top,
                          f"{where} has tables ({', '.join(sorted(tables)[:5])}...) but no migration record: "
                          "it was not made by relman; point RELMAN_DB_URL at an empty database or a relman one")
        return Status(db.masked_url, "empty", None, top,
                      f"{where} is not migrated (no relman schema yet): run `relman db upgrade`")
    try:
        known = script.get_revision(current)
    except Exception:
        known = None
    if known is None:
        return Status(db.masked_url, "ahead", current, top,
                      f"{where} is at migration {current}, newer than this relman knows (its newest is {top}): "
                      "upgrade relman (pip install -U release_manager) before using this database")
    if current != top:
        return Status(db.masked_url, "behind", current, top,
                      f"{where} is at migration {current}, behind this relman's {top}: run `relman db upgrade`")
    return Status(db.masked_url, "current", current, top, f"{where} is up to date (migration {current})")


def _run(db, fn, revision: str) -> Status:
    db.create_file()
    with db.connection() as conn:
        raw = conn.connection.driver_connection if db.backend == "sqlite" else None
        if raw is not None:
            # SQLite alters a table by copying it; with foreign keys on, dropping the old copy fails.
            # The pragma only works outside a transaction; the check afterwards keeps us honest.
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                fn(config(conn), revision)
            if raw is not None:
                bad = raw.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise RuntimeError(f"migration to {revision} broke foreign keys: {bad[:5]}")
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")
    db._checked = False
    return status(db)


def upgrade(db, revision: str = "head") -> Status:
    return _run(db, command.upgrade, revision)


def downgrade(db, revision: str) -> Status:
    return _run(db, command.downgrade, revision)
