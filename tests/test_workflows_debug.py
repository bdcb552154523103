"""`relman debug-build`: strict inputs, a real debug image where gdb finds symbols, the request recorded."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from test_workflows_helpers import make_ctx, wf_db, wf_settings  # noqa: F401 - fixtures

from release_manager import engine
from release_manager.cli import main
from release_manager.db.models import DebugRequest, Image
from release_manager.errors import UsageError
from release_manager.workflows.debug import debug_build


def _requests(db):
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(DebugRequest))


@pytest.mark.parametrize("requester", ["alice;id", "$(id)", "Alice", "", "-rf", "a" * 40, "bob/x", "al ice",
                                       "root\nx"])
def test_hostile_requester_refused_before_anything(wf_settings, specs, demo_repo, api, wf_db, requester):
    before = _requests(wf_db)
    with pytest.raises(UsageError, match="not a valid user name"):
        debug_build(make_ctx(wf_settings, specs, api, wf_db), "evtselect", "v1.1.0", requester)
    assert _requests(wf_db) == before


@pytest.mark.parametrize("ref", ["; rm -rf /", "$(id)", "a..b", "-x", "v1\nv2"])
def test_hostile_ref_refused(wf_settings, specs, demo_repo, api, wf_db, ref):
    before = _requests(wf_db)          # the module's database: other tests may have recorded requests
    with pytest.raises(UsageError, match="not a valid git ref"):
        debug_build(make_ctx(wf_settings, specs, api, wf_db), "evtselect", ref, "alice")
    assert _requests(wf_db) == before


@pytest.mark.parametrize("ttl", [0, -1, 91])
def test_bad_ttl_refused(wf_settings, specs, demo_repo, api, wf_db, ttl):
    with pytest.raises(UsageError, match="--ttl"):
        debug_build(make_ctx(wf_settings, specs, api, wf_db), "evtselect", "v1.1.0", "alice", ttl)


def test_cli_refuses_hostile_requester_with_exit_2(wf_settings, monkeypatch):
    monkeypatch.setenv("RELMAN_DB_URL", wf_settings.database_url)
    r = CliRunner().invoke(main, ["debug-build", "evtselect", "--ref", "v1.1.0", "--requester", "x;reboot"])
    assert r.exit_code == 2 and "not a valid user name" in r.output


def test_debug_build_pushes_an_image_where_gdb_finds_symbols(wf_settings, specs, api, wf_db, demo_build):
    lines = []
    rep = debug_build(make_ctx(wf_settings, specs, api, wf_db, lines), "evtselect", "v1.1.0", "alice", ttl=3)
    assert rep["status"] == "built"
    assert rep["image"].endswith("/fermi-lat/evtselect:dev-alice-v1.1.0-debug")
    # the same build key as the session's release build: skipped, same digest, one layer over runtime
    assert rep["digest"] == demo_build["debug"].digest
    from release_manager.registry import Registry
    reg = Registry(wf_settings.registry)
    assert reg.manifest_digest("fermi-lat/evtselect", "dev-alice-v1.1.0-debug") == rep["digest"]
    # gdb in the pushed image finds the main program's source lines
    image = f"{rep['image'].rsplit(':', 1)[0]}@{rep['digest']}"
    rc, out = engine.run(api, image, ["gdb", "-batch", "-ex", "info line main", rep["binary"]])
    assert rc == 0 and re.search(r'Line \d+ of "[^"]+"', out), out
    assert rep["pull"] == f"docker pull {rep['image']}" and "gdb /opt/evtselect/bin/evtselect" in rep["gdb"]
    # the request, its expiry and its image are recorded
    with wf_db.read() as s:
        req = s.get(DebugRequest, rep["request"])
        assert req.status == "built" and req.requester == "alice" and req.ref == "v1.1.0"
        left = req.expires_at - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        assert dt.timedelta(days=2, hours=23) < left <= dt.timedelta(days=3)
        img = s.get(Image, req.image_pk)
        # the image row of that digest: made by the first request for it (bob's, when
        # test_cli_prints_pull_and_gdb ran first), and tagged for alice too
        assert img.variant == "debug" and img.digest == rep["digest"] and img.requested_by in ("alice", "bob")
        assert "dev-alice-v1.1.0-debug" in img.tags
    assert rep["summary_file"] and "dev-alice-v1.1.0-debug" in open(rep["summary_file"]).read()


def test_cli_prints_pull_and_gdb(wf_settings, demo_build, monkeypatch):
    monkeypatch.setenv("RELMAN_DB_URL", wf_settings.database_url)
    r = CliRunner().invoke(main, ["debug-build", "evtselect", "--ref", "v1.1.0", "--requester", "bob", "--ttl", "1"])
    assert r.exit_code == 0, r.output
    assert "docker pull 127.0.0.1:5000/fermi-lat/evtselect:dev-bob-v1.1.0-debug" in r.output
    assert "gdb /opt/evtselect/bin/evtselect" in r.output
