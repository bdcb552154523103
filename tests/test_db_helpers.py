"""Fixtures and helpers of the release-database tests (imported by the other test_db_* modules).

Every database test runs on three backends: SQLite (a file per module), MariaDB and PostgreSQL
(URLs from RELMAN_TEST_MARIADB_URL / RELMAN_TEST_POSTGRES_URL; `scripts/start-databases` makes
them). A server that cannot be reached fails the tests when CI is set, and skips them otherwise.
Each module starts from an empty schema, migrated up by the code under test.
"""
from __future__ import annotations

import copy
import hashlib
import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

MARIADB_URL = os.environ.get("RELMAN_TEST_MARIADB_URL", "mysql+pymysql://relman:relman-test@127.0.0.1/relman_test")
POSTGRES_URL = os.environ.get("RELMAN_TEST_POSTGRES_URL",
                              "postgresql+psycopg2://relman:relman-test@127.0.0.1/relman_test")
BACKENDS = ["sqlite", "mariadb", "postgresql"]


def _unreachable(name: str, url: str, exc: Exception):
    shown = make_url(url).render_as_string(hide_password=True)
    msg = (f"{name} test server {shown} unreachable ({str(exc).splitlines()[0]}); "
           "start it with `sudo scripts/start-databases`")
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def reset_server(url: str) -> None:
    """Drop and recreate the test schema: nothing survives from an earlier module or run."""
    u = make_url(url)
    engine = create_engine(u, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            if u.get_backend_name() == "postgresql":
                c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                c.execute(text("CREATE SCHEMA public"))
            else:
                c.execute(text(f"DROP DATABASE IF EXISTS `{u.database}`"))
                c.execute(text(f"CREATE DATABASE `{u.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    finally:
        engine.dispose()


def backend_url(name: str, tmp_path_factory) -> str:
    if name == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'relman.db'}"
    url = MARIADB_URL if name == "mariadb" else POSTGRES_URL
    try:
        reset_server(url)
    except Exception as exc:  # noqa: BLE001 - any driver error means: not there
        _unreachable(name, url, exc)
    return url


@pytest.fixture(scope="module", params=BACKENDS)
def empty_url(request, tmp_path_factory):
    """A URL of an empty database on each backend (the schema dropped and recreated)."""
    from release_manager.db import connection
    url = backend_url(request.param, tmp_path_factory)
    connection._cache.pop(url, None)
    yield url
    db = connection._cache.pop(url, None)
    if db is not None:
        db.dispose()


@pytest.fixture(scope="module")
def db(empty_url):
    """A migrated database on each backend."""
    from release_manager.db import connect, migrate
    d = connect(empty_url, fresh=True)
    migrate.upgrade(d)
    yield d
    d.dispose()


@pytest.fixture
def cli(db, monkeypatch, tmp_path):
    """Run relman against the test database: cli("images", "list") -> click Result."""
    from click.testing import CliRunner
    from release_manager.cli import main
    monkeypatch.setenv("RELMAN_DB_URL", str(db.url.render_as_string(hide_password=False)))
    monkeypatch.setenv("RELMAN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RELMAN_CONFIG", raising=False)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)
    return run


# ---------------------------------------------------------------------- build result documents

def sha(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


BASE_RESULT = {
    "package": "evtselect", "ref": "v1.1.0", "commit": "0123456789abcdef0123456789abcdef01234567",
    "variant": "runtime", "target": "runtime", "build_key": "a" * 64,
    "repository": "127.0.0.1:5000/fermi-lat/evtselect", "tags": ["v1.1.0-runtime", "bk-" + "a" * 40],
    "status": "built", "image_id": sha("image"), "digest": sha("digest"), "pushed": True, "size": 123_000_000,
    "layers": [{"digest": sha("layer0"), "size": 1000}], "labels": {"org.opencontainers.image.version": "v1.1.0"},
    "base_digest": sha("base"), "spec_hash": "f" * 64, "manifest_file": None, "checks": [{"name": "ldd", "ok": True}],
    "size_budget": {"max": 500_000_000, "on_exceed": "warn", "over": False},
    "started": "2024-06-01T10:00:00Z", "finished": "2024-06-01T10:05:00Z", "duration": 300.0, "message": "",
    "builder_host": "builder-1", "build_url": "https://jenkins.example/job/evtselect/1/",
}


def result(package="evtselect", variant="runtime", n=0, pushed=True, **over) -> dict:
    """A build result as BuildResult.as_dict() writes it; n makes a distinct build."""
    r = copy.deepcopy(BASE_RESULT)
    key = hashlib.sha256(f"{package}-{variant}-{n}".encode()).hexdigest()
    r.update(package=package, variant=variant, target=variant, build_key=key,
             repository=f"127.0.0.1:5000/fermi-lat/{package}", tags=[f"v1.{n}.0-{variant}", f"bk-{key[:40]}"],
             ref=f"v1.{n}.0", image_id=sha(f"{package}-{variant}-{n}-image"),
             digest=sha(f"{package}-{variant}-{n}-digest") if pushed else None, pushed=pushed,
             started=f"2024-06-{1 + n % 28:02d}T10:00:00Z", finished=f"2024-06-{1 + n % 28:02d}T10:05:00Z")
    r.update(over)
    return r


CHECKS = [{"file": "ft1.fits", "hdu": "EVENTS", "column": "ENERGY", "test": "ks", "statistic": 0.01,
           "p_value": 0.9, "thresholds": {"p_value": 0.01}, "result": "pass"},
          {"file": "ft1.fits", "hdu": "EVENTS", "column": "TIME", "test": "exact", "statistic": 0.0,
           "p_value": None, "thresholds": None, "result": "pass"}]
