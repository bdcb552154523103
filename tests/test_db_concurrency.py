"""Several processes recording at once (real processes, each with its own connections): one row and
one winner for the same result, no lost rows for different ones. On each backend."""
from __future__ import annotations

import pytest

import multiprocessing as mp

from sqlalchemy import func, select

from test_db_helpers import db, empty_url, result  # noqa: F401 - fixtures

from release_manager.db import models as m

# the MariaDB and PostgreSQL databases are one per server, shared by this module's tests in file order
pytestmark = pytest.mark.random_order(disabled=True)


WORKERS = 6
CTX = mp.get_context("fork")           # cheap to start; the child leaves the parent's connections alone


def _worker(url, docs, barrier, out):
    from release_manager.db import connect, connection, record_build
    for inherited in connection._cache.values():
        inherited.engine.dispose(close=False)
    d = connect(url, fresh=True)
    d.require_schema()
    barrier.wait(60)                   # everyone is connected: now race
    try:
        actions = [record_build(doc, db=d, actor="worker").action for doc in docs]
        if d.races_lost:
            print(f"worker lost {d.races_lost} race(s) and ran its transaction again")
        out.put(actions)
    except Exception as exc:           # noqa: BLE001 - reported to the parent as a failure
        out.put([f"error: {type(exc).__name__}: {exc}"])
    finally:
        d.dispose()


def _race(url, docs_per_worker):
    barrier, out = CTX.Barrier(len(docs_per_worker)), CTX.Queue()
    procs = [CTX.Process(target=_worker, args=(url, docs, barrier, out)) for docs in docs_per_worker]
    for p in procs:
        p.start()
    actions = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return actions


def _url(db):
    return db.url.render_as_string(hide_password=False)


def _count(db, model, *where):
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_same_result_recorded_at_once_gives_one_row_and_one_winner(db):
    doc = result(package="race-same", n=1)
    actions = [a for batch in _race(_url(db), [[doc]] * WORKERS) for a in batch]
    assert sorted(actions) == ["created"] + ["unchanged"] * (WORKERS - 1), actions
    assert _count(db, m.Image, m.Image.build_key == doc["build_key"]) == 1
    assert _count(db, m.Package, m.Package.name == "race-same") == 1
    assert _count(db, m.AuditEvent, m.AuditEvent.action == "record-build",
                  m.AuditEvent.package_id.in_(select(m.Package.id).where(m.Package.name == "race-same"))) == 1


def test_different_results_recorded_at_once_lose_no_rows(db):
    per = 8
    batches = [[result(package="race-many", variant=f"v{w}", n=i) for i in range(per)] for w in range(WORKERS)]
    actions = [a for batch in _race(_url(db), batches) for a in batch]
    assert actions == ["created"] * (WORKERS * per), actions
    with db.read() as s:
        pkg = s.scalar(select(m.Package).where(m.Package.name == "race-many"))
        assert _count(db, m.Image, m.Image.package_id == pkg.id) == WORKERS * per
        assert _count(db, m.ImageTag, m.ImageTag.image_pk.in_(
            select(m.Image.id).where(m.Image.package_id == pkg.id))) == WORKERS * per * 2
    assert _count(db, m.Package, m.Package.name == "race-many") == 1


def test_local_and_pushed_results_of_one_image_race_to_one_row(db):
    local = result(package="race-push", n=2, pushed=False)
    pushed = result(package="race-push", n=2, pushed=True)
    actions = [a for batch in _race(_url(db), [[local], [pushed]] * (WORKERS // 2)) for a in batch]
    assert _count(db, m.Image, m.Image.build_key == pushed["build_key"]) == 1
    assert actions.count("created") == 1, actions
    with db.read() as s:
        img = s.scalar(select(m.Image).where(m.Image.build_key == pushed["build_key"]))
        assert img.status == "pushed" and img.digest == pushed["digest"]
