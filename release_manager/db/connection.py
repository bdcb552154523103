"""Connecting to the release database: SQLite, MariaDB (PyMySQL) or PostgreSQL (psycopg2).

`connect(url)` gives a `Database`; `Database.write(fn)` runs fn(session) in one transaction and runs
it again when it lost a race (a unique key another process inserted first, a deadlock, a busy SQLite
file), so callers write plain "look up, else insert" code and still get one row and one winner.
"""
from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Engine, make_url, URL
from sqlalchemy.orm import Session, sessionmaker

from release_manager.errors import RelmanError, UsageError

T = TypeVar("T")
RETRIES = 12
LOCK_TIMEOUT = 30.0            # seconds a write waits for a lock another process holds (RELMAN_DB_LOCK_TIMEOUT)
# The newest migration in migrations/versions (a test keeps the two equal). The schema guard compares
# alembic_version with it directly, so a command does not pay for importing alembic.
SCHEMA_HEAD = "0005"


class DatabaseError(RelmanError):
    """The database is unreachable, refused a statement, or its schema is not the one relman knows."""


class SchemaError(DatabaseError):
    """The database is not migrated, behind, or ahead of this relman."""


class DatabaseLocked(DatabaseError):
    """Another process held a lock longer than the lock timeout (RELMAN_DB_LOCK_TIMEOUT)."""


def resolve_lock_timeout(value=None) -> float:
    """Seconds to wait for a lock: the value given, else RELMAN_DB_LOCK_TIMEOUT, else 30."""
    raw = value if value is not None else os.environ.get("RELMAN_DB_LOCK_TIMEOUT", LOCK_TIMEOUT)
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"RELMAN_DB_LOCK_TIMEOUT={raw!r}: expected a number of seconds") from None
    if not seconds > 0:
        raise UsageError(f"RELMAN_DB_LOCK_TIMEOUT={raw!r}: expected a number of seconds above 0")
    return seconds


def mask(url) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparseable URL>"


def _parse(url: str) -> URL:
    try:
        u = make_url(url)
    except exc.ArgumentError:
        raise UsageError(f"RELMAN_DB_URL: not a database URL: {mask(url)}; expected sqlite:///PATH, "
                         "mysql+pymysql://USER:PASSWORD@HOST/DB or postgresql+psycopg2://USER:PASSWORD@HOST/DB") from None
    if u.get_backend_name() not in ("sqlite", "mysql", "mariadb", "postgresql"):
        raise UsageError(f"RELMAN_DB_URL: unsupported database {u.get_backend_name()!r} in {mask(u)}; "
                         "relman supports sqlite, mysql+pymysql (MariaDB) and postgresql+psycopg2")
    return u


def _sqlite_file(u: URL) -> Optional[Path]:
    return Path(u.database).expanduser() if u.database and u.database != ":memory:" else None


def _sqlite_engine(u: URL, wait: float) -> Engine:
    engine = create_engine(u, connect_args={"timeout": wait})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, record):
        dbapi_conn.isolation_level = None          # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        if u.database and u.database != ":memory:":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A writer takes the write lock up front: two writers queue instead of deadlocking on an upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("relman_write") else "BEGIN")

    return engine


def _server_engine(u: URL, wait: float) -> Engine:
    kw = {"pool_pre_ping": True, "isolation_level": "READ COMMITTED"}
    if u.get_backend_name() in ("mysql", "mariadb"):
        if "charset" not in u.query:
            u = u.update_query_dict({"charset": "utf8mb4"})
        kw["connect_args"] = {"connect_timeout": 10,
                              "init_command": f"SET SESSION innodb_lock_wait_timeout={max(1, round(wait))}"}
    else:
        kw["connect_args"] = {"connect_timeout": 10, "options": f"-c lock_timeout={int(wait * 1000)}"}
    return create_engine(u, **kw)


def _lost_race(e: exc.DBAPIError) -> bool:
    """Worth running the transaction again: a duplicate key, a deadlock, a busy file, a serialisation failure."""
    if isinstance(e, exc.IntegrityError):
        return True
    orig = getattr(e, "orig", None)
    code = getattr(orig, "pgcode", None)
    if code in ("40001", "40P01"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1205, 1213):          # MariaDB lock wait timeout, deadlock
        return True
    return "database is locked" in str(orig)


def _lock_wait(e: exc.DBAPIError) -> bool:
    """A lock another session holds, waited for until the timeout: SQLite busy, MariaDB 1205, PostgreSQL 55P03."""
    orig = getattr(e, "orig", None)
    if getattr(orig, "pgcode", None) == "55P03":
        return True
    args = getattr(orig, "args", ())
    if args and args[0] == 1205:
        return True
    return "database is locked" in str(orig)


class Database:
    def __init__(self, url: str, lock_timeout: Optional[float] = None):
        self.url = _parse(url)
        self.masked_url = mask(self.url)
        self.backend = self.url.get_backend_name()
        self.lock_timeout = resolve_lock_timeout(lock_timeout)
        self.engine = (_sqlite_engine(self.url, self.lock_timeout) if self.backend == "sqlite"
                       else _server_engine(self.url, self.lock_timeout))
        self._write_engine = self.engine.execution_options(relman_write=True)
        self._reader = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._writer = sessionmaker(bind=self._write_engine, expire_on_commit=False)
        self._checked = False
        self.races_lost = 0            # transactions run again (for tests and diagnostics)

    def __repr__(self):
        return f"Database({self.masked_url})"

    # ------------------------------------------------------------------ connections

    def _locked(self, waited: float) -> DatabaseLocked:
        return DatabaseLocked(
            f"the database {self.masked_url} is locked: another process holds a lock on it and did not release it "
            f"within {waited:.0f} s (RELMAN_DB_LOCK_TIMEOUT={self.lock_timeout:g}). Nothing was written; find the "
            "process holding it (SQLite: `fuser` on the file; servers: their process list) or run again later")

    def _unreachable(self, e: Exception) -> DatabaseError:
        if isinstance(e, exc.DBAPIError) and _lock_wait(e):
            return self._locked(self.lock_timeout)
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        if self.url.password:
            reason = reason.replace(str(self.url.password), "***")
        return DatabaseError(f"cannot use the database {self.masked_url}: {reason}")

    @contextmanager
    def connection(self) -> Iterator:
        try:
            conn = self.engine.connect()
        except exc.DBAPIError as e:
            raise self._unreachable(e) from None
        try:
            yield conn
        finally:
            conn.close()

    def exists(self) -> bool:
        """False only for an SQLite file that is not there (a server database is asked, not assumed)."""
        path = _sqlite_file(self.url) if self.backend == "sqlite" else None
        return path is None or path.exists()

    def create_file(self) -> None:
        """SQLite: make the folder the database file goes in (before `relman db upgrade` creates it)."""
        path = _sqlite_file(self.url) if self.backend == "sqlite" else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def ping(self) -> None:
        with self.connection() as conn:
            conn.execute(text("SELECT 1"))

    # ------------------------------------------------------------------ schema guard

    def require_schema(self) -> None:
        """Refuse to go on unless the database is at the migration this relman ships (checked once)."""
        if self._checked:
            return
        if not self.exists():                              # do not leave an empty SQLite file behind
            raise SchemaError(f"the database {self.masked_url} does not exist yet: run `relman db upgrade` "
                              "to create it")
        try:
            with self.connection() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except DatabaseError:
            raise
        except exc.DBAPIError:
            current = None                     # no such table: migrate.status explains
        if current == [SCHEMA_HEAD]:
            self._checked = True
            return
        from release_manager.db import migrate
        st = migrate.status(self)
        if st.state != "current":
            raise SchemaError(st.advice)
        self._checked = True

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def read(self) -> Iterator[Session]:
        self.require_schema()
        s = self._reader()
        try:
            with s.begin():
                yield s
        except exc.OperationalError as e:
            raise self._unreachable(e) from None
        finally:
            s.close()

    def write(self, fn: Callable[[Session], T], retries: int = RETRIES) -> T:
        """fn(session) in one transaction, committed at the end; run again from the start when it lost a race."""
        self.require_schema()
        t0 = time.monotonic()
        for attempt in range(retries):
            s = self._writer()
            try:
                with s.begin():
                    return fn(s)
            except exc.DBAPIError as e:
                waited = time.monotonic() - t0
                if _lock_wait(e) and (waited >= self.lock_timeout or attempt + 1 >= retries):
                    raise self._locked(waited) from None   # the driver already waited: do not wait again
                if attempt + 1 < retries and _lost_race(e):
                    self.races_lost += 1
                    time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                if isinstance(e, (exc.OperationalError, exc.InterfaceError)):
                    raise self._unreachable(e) from None
                raise DatabaseError(f"the database {self.masked_url} refused a change: "
                                    f"{str(getattr(e, 'orig', e)).splitlines()[0]}") from None
            finally:
                s.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def dispose(self):
        self.engine.dispose()


_cache: dict = {}


def connect(url: str, fresh: bool = False, lock_timeout: Optional[float] = None) -> Database:
    """The Database for `url` (one engine per URL, lock timeout and process)."""
    key = (url, resolve_lock_timeout(lock_timeout))
    if fresh or key not in _cache:
        _cache[key] = Database(url, key[1])
    return _cache[key]


def for_settings(settings) -> Database:
    return connect(settings.database_url, lock_timeout=getattr(settings, "db_lock_timeout", None))
