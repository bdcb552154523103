"""Migrations from empty, the schema guard, connection errors, the append-only audit log."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from test_db_helpers import empty_url, result  # noqa: F401 - fixtures

from release_manager.db import connect, migrate, record_build
from release_manager.db.connection import DatabaseError, SchemaError

# the MariaDB and PostgreSQL databases are one per server, shared by this module's tests in file order
pytestmark = pytest.mark.random_order(disabled=True)


def _cli(url, monkeypatch, tmp_path, *args):
    from click.testing import CliRunner
    from release_manager.cli import main
    monkeypatch.setenv("RELMAN_DB_URL", url)
    monkeypatch.setenv("RELMAN_DATA_DIR", str(tmp_path))
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_guard_refuses_an_empty_database_and_upgrade_migrates_it(empty_url, monkeypatch, tmp_path):
    db = connect(empty_url, fresh=True)
    assert migrate.status(db).state == "empty"
    with pytest.raises(SchemaError, match=r"(not migrated|does not exist yet).*run `relman db upgrade`"):
        record_build(result(), db=db)
    r = _cli(empty_url, monkeypatch, tmp_path, "images", "list")
    assert r.exit_code == 1 and "relman db upgrade" in r.output
    r = _cli(empty_url, monkeypatch, tmp_path, "db", "status")
    assert r.exit_code == 1 and "empty" in r.output

    r = _cli(empty_url, monkeypatch, tmp_path, "db", "upgrade")
    assert r.exit_code == 0, r.output
    assert "migrated from empty to " + migrate.head() in r.output
    r = _cli(empty_url, monkeypatch, tmp_path, "db", "upgrade")
    assert r.exit_code == 0 and "nothing to do" in r.output
    r = _cli(empty_url, monkeypatch, tmp_path, "db", "status", "--json")
    assert r.exit_code == 0 and '"state": "current"' in r.output
    assert "relman-test" not in r.output          # the password is masked
    assert record_build(result(), db=connect(empty_url, fresh=True)).created


def test_migrations_match_the_models(empty_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from release_manager.db.models import Base
    db = connect(empty_url, fresh=True)
    migrate.upgrade(db)
    with db.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata) == []


def test_the_guard_knows_the_newest_migration():
    from release_manager.db.connection import SCHEMA_HEAD
    assert SCHEMA_HEAD == migrate.head(), "set connection.SCHEMA_HEAD to the new migration's revision"


def test_downgrade_to_base_and_up_again(empty_url):
    db = connect(empty_url, fresh=True)
    migrate.upgrade(db)
    assert migrate.downgrade(db, "base").state == "empty"
    assert migrate.upgrade(db).state == "current"


def test_guard_refuses_a_database_migrated_past_this_relman(empty_url, monkeypatch, tmp_path):
    db = connect(empty_url, fresh=True)
    migrate.upgrade(db)
    with db.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    try:
        st = migrate.status(db)
        assert st.state == "ahead"
        with pytest.raises(SchemaError, match=r"ffff9999, newer than this relman.*upgrade relman"):
            connect(empty_url, fresh=True).require_schema()
        r = _cli(empty_url, monkeypatch, tmp_path, "db", "upgrade")
        assert r.exit_code == 1 and "upgrade relman" in r.output
        r = _cli(empty_url, monkeypatch, tmp_path, "history", "evtselect")
        assert r.exit_code == 1 and "upgrade relman" in r.output
    finally:
        with db.engine.begin() as c:
            c.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": migrate.head()})
    assert migrate.status(db).state == "current"


def test_guard_refuses_tables_that_relman_did_not_make(tmp_path):
    db = connect(f"sqlite:///{tmp_path / 'other.db'}", fresh=True)
    with db.engine.begin() as c:
        c.execute(text("CREATE TABLE images (x INTEGER)"))
    with pytest.raises(SchemaError, match="not made by relman"):
        db.require_schema()


def test_audit_log_is_append_only_in_the_database(empty_url):
    db = connect(empty_url, fresh=True)
    migrate.upgrade(db)
    record_build(result(n=1), db=db)
    for stmt in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            with db.engine.begin() as c:
                c.execute(text(stmt))
    with db.engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM audit_log WHERE actor = 'mallory'")).scalar() == 0


@pytest.mark.parametrize("url", [
    "mysql+pymysql://relman:s3cret-pw@127.0.0.1:1/relman_test",
    "postgresql+psycopg2://relman:s3cret-pw@127.0.0.1:1/relman_test",
])
def test_unreachable_database_shows_the_url_with_the_password_masked(url, monkeypatch, tmp_path):
    with pytest.raises(DatabaseError) as err:
        connect(url, fresh=True).require_schema()
    msg = str(err.value)
    assert "s3cret-pw" not in msg and "relman:***@127.0.0.1:1/relman_test" in msg
    r = _cli(url, monkeypatch, tmp_path, "images", "list")
    assert r.exit_code == 1
    assert "s3cret-pw" not in r.output and "***" in r.output and r.output.startswith("relman: error: cannot use")


def test_bad_database_urls_are_usage_errors(monkeypatch, tmp_path):
    r = _cli("nonsense", monkeypatch, tmp_path, "images", "list")
    assert r.exit_code == 2 and "not a database URL" in r.output
    r = _cli("oracle://u:topsecret@h/db", monkeypatch, tmp_path, "db", "status")
    assert r.exit_code == 2 and "unsupported database" in r.output and "topsecret" not in r.output


NEXT_MIGRATION = '''"""test only: one more column

Revision ID: 9002
Revises: {head}
"""
from alembic import op
import sqlalchemy as sa


revision = "9002"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("packages") as b:
        b.add_column(sa.Column("note", sa.String(64), nullable=True))


def downgrade():
    with op.batch_alter_table("packages") as b:
        b.drop_column("note")
'''


def test_a_database_behind_this_relman_is_refused_until_upgraded(empty_url, tmp_path, monkeypatch):
    """A newer relman (simulated: one more migration) meets a database of the older one."""
    import shutil
    from release_manager.db import connection
    db = connect(empty_url, fresh=True)
    migrate.upgrade(db)
    old_head = migrate.head()
    newer = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, newer)
    (newer / "versions" / "9002_note.py").write_text(NEXT_MIGRATION.format(head=old_head))
    monkeypatch.setattr(migrate, "MIGRATIONS", newer)
    monkeypatch.setattr(connection, "SCHEMA_HEAD", "9002")
    try:
        db = connect(empty_url, fresh=True)
        with pytest.raises(SchemaError, match=f"at migration {old_head}, behind this relman's 9002: "
                                              "run `relman db upgrade`"):
            db.require_schema()
        assert migrate.upgrade(db).state == "current"
        db.require_schema()
        with db.engine.connect() as c:
            assert c.execute(text("SELECT COUNT(note) FROM packages")).scalar() == 0
    finally:
        migrate.downgrade(connect(empty_url, fresh=True), old_head)


def test_a_missing_sqlite_file_is_reported_not_created(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "relman.db"
    url = f"sqlite:///{path}"
    for args in (["images", "list"], ["db", "status"], ["audit"]):
        r = _cli(url, monkeypatch, tmp_path, *args)
        assert r.exit_code == 1 and "does not exist yet: run `relman db upgrade`" in r.output, (args, r.output)
    assert not path.parent.exists()
    r = _cli(url, monkeypatch, tmp_path, "db", "upgrade")
    assert r.exit_code == 0 and path.is_file()
