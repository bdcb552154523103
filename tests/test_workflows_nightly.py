"""Nightly builds, retention (gc) and reconcile, end to end on a package of their own: a clone of the demo
repository built under a fresh package name, so the registry repository these tests tag, delete and
collect belongs to this run alone. The life of one package's nightlies is one test, its steps in order
(each step builds on the state the one before left); the other tests stand alone."""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
from click.testing import CliRunner

from test_workflows_helpers import (drop_repository, host_reference, make_ctx, own_package, webhook,  # noqa: F401
                                    wf_db, wf_settings)

from release_manager import tags
from release_manager.cli import main
from release_manager.demo import add_commit
from release_manager.registry import Registry
from release_manager.workflows.common import image_rows, record_result
from release_manager.workflows.gc import GcSettings, collect
from release_manager.workflows.nightly import NightlyFailed, run_nightly
from release_manager.workflows.promote import promote
from release_manager.workflows.reconcile import reconcile

DAY_A, DAY_B, TODAY = dt.date(2026, 10, 1), dt.date(2026, 11, 20), dt.date(2026, 11, 27)


@pytest.fixture(scope="module")
def pkg(tmp_path_factory, demo_repo, settings, api):
    name = f"wf{uuid.uuid4().hex[:6]}"
    repo, specs = own_package(tmp_path_factory.mktemp("pkg"), demo_repo, name)
    yield {"name": name, "repo": repo, "specs": specs, "path": f"fermi-lat/{name}"}
    drop_repository(settings, f"fermi-lat/{name}", api)


@pytest.fixture
def ctx(wf_settings, pkg, api, wf_db):
    return make_ctx(wf_settings, pkg["specs"], api, wf_db)


def reg(settings):
    return Registry(settings.registry)


def _step_nightly_builds_verifies_tags_and_moves_aliases(ctx, pkg, wf_settings, state):
    rep = run_nightly(ctx, pkg["name"], DAY_A)
    assert rep["status"] == "passed", rep
    assert [i["variant"] for i in rep["images"]] == ["runtime", "debug", "full"]
    r = reg(wf_settings)
    for item in rep["images"]:
        assert item["verdict"] == "passed"
        v = item["variant"]
        assert r.manifest_digest(pkg["path"], f"nightly-20261001-{v}") == item["digest"]
        assert r.manifest_digest(pkg["path"], f"nightly-{v}") == item["digest"]
    rows = {x["variant"]: x for x in image_rows(ctx, pkg["name"])}
    assert all(rows[v]["status"] == "verified" and rows[v]["verdict"] == "passed" for v in ("runtime", "debug", "full"))
    assert "nightly-20261001-runtime" in rows["runtime"]["tags"] and "nightly-runtime" in rows["runtime"]["tags"]
    state["a"] = {i["variant"]: i["digest"] for i in rep["images"]}


def _step_unchanged_head_is_skipped_quickly_and_recorded(ctx, pkg):
    from release_manager.db.queries import audit
    t0 = time.monotonic()
    rep = run_nightly(ctx, pkg["name"], DAY_A + dt.timedelta(days=1))
    seconds = time.monotonic() - t0
    assert rep["status"] == "skipped" and rep["last_nightly"] == "20261001"
    assert seconds < 15, seconds
    with ctx.database().read() as s:
        assert any(e["action"] == "nightly-skip" for e in audit(s, pkg["name"]))
    assert reg(ctx.settings).manifest_digest(pkg["path"], "nightly-20261002-runtime") is None


def _step_cli_nightly_skip_as_json(pkg, wf_settings, monkeypatch):
    monkeypatch.setenv("RELMAN_DB_URL", wf_settings.database_url)
    monkeypatch.setenv("RELMAN_SPECS_DIR", str(next(iter(pkg["specs"].packages.values())).path.parent))
    r = CliRunner().invoke(main, ["nightly", pkg["name"], "--date", "2026-10-03", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["status"] == "skipped" and rep["date"] == "2026-10-03" and rep["summary_file"].endswith(".json")


def _step_new_commit_builds_and_moves_the_aliases(ctx, pkg, wf_settings, state):
    add_commit(pkg["repo"], "README.md", "\nA later commit for the nightly.\n", "docs: nightly test",
               "2026-11-19T10:00:00+00:00")
    rep = run_nightly(ctx, pkg["name"], DAY_B)
    assert rep["status"] == "passed", rep
    b = {i["variant"]: i["digest"] for i in rep["images"]}
    assert all(b[v] != state["a"][v] for v in b)
    r = reg(wf_settings)
    for v, d in b.items():
        assert r.manifest_digest(pkg["path"], f"nightly-{v}") == d
        assert r.manifest_digest(pkg["path"], f"nightly-20261001-{v}") == state["a"][v]   # the old one stays
    state["b"] = b
    state["commit_b"] = rep["commit"]


def test_failed_nightly_notifies_and_writes_a_summary(wf_settings, api, wf_db, tmp_path, demo_repo, webhook):
    url, received = webhook
    name = f"wf{uuid.uuid4().hex[:6]}"
    repo, specs = own_package(tmp_path, demo_repo, name)
    y = next(iter(specs.packages.values())).path
    y.write_text(y.read_text().replace("    - make -j2\n", "    - make -j2\n    - test -e /no/such/file\n"))
    from release_manager.spec import load_specs
    specs = load_specs(y.parent)
    s = wf_settings.model_copy(update={"webhook_url": url, "registry_password": None})
    with pytest.raises(NightlyFailed, match="failed to build") as exc:
        run_nightly(make_ctx(s, specs, api, wf_db), name, DAY_A)
    rep = exc.value.report
    assert rep["status"] == "failed" and rep["notified"] is True
    assert len(received) == 1 and received[0]["body"]["workflow"] == "nightly"
    assert received[0]["body"]["status"] == "failed" and "test -e /no/such/file" in received[0]["body"]["message"]
    assert "SECRET-TOKEN" not in json.dumps(received[0]["body"])
    summary = json.loads(open(rep["summary_file"]).read())
    assert summary["status"] == "failed" and "SECRET-TOKEN" not in open(rep["summary_file"]).read()
    assert open(rep["summary_file"].replace(".json", ".txt")).read().startswith(f"relman nightly {name}: failed")
    rows = image_rows(make_ctx(s, specs, api, wf_db), name)
    assert rows and all(r["status"] == "failed" for r in rows)     # the failure is recorded


def test_nightly_without_verification_tags_but_moves_no_alias(wf_settings, api, wf_db, tmp_path, demo_repo):
    name = f"wf{uuid.uuid4().hex[:6]}"
    repo, specs = own_package(tmp_path, demo_repo, name)
    y = next(iter(specs.packages.values())).path
    text = y.read_text().replace('host_prefix: "{data_dir}/host-build/evtselect"',
                                 'host_prefix: "{data_dir}/no-such-host-build"')
    y.write_text(text.replace("variants: [runtime, debug, full]}", "variants: [runtime]}"))
    from release_manager.spec import load_specs
    ctx = make_ctx(wf_settings, load_specs(y.parent), api, wf_db)
    rep = run_nightly(ctx, name, DAY_A)
    assert rep["status"] == "unverified"
    [item] = rep["images"]
    assert item["verdict"] == "not-run" and "reference host build missing" in item["verify_reason"]
    r = reg(wf_settings)
    assert r.manifest_digest(f"fermi-lat/{name}", "nightly-20261001-runtime") == item["digest"]
    assert r.manifest_digest(f"fermi-lat/{name}", "nightly-runtime") is None
    [row] = image_rows(ctx, name)
    assert row["status"] == "pushed" and row["verdict"] is None
    drop_repository(wf_settings, f"fermi-lat/{name}", api)


def _step_gc_dry_run_then_gc(ctx, pkg, wf_settings, state):
    # what must survive: A's runtime promoted; B everything (newest, aliases)
    promote(ctx, pkg["name"], "nightly-20261001-runtime", "keep-a-runtime", "alice", "pinned for a paper")
    # an expired debug build of B's commit (its own images: the ref is part of the build key, so
    # labels never name another ref), and an old failed build
    from release_manager.workflows.debug import debug_build
    sha = state["commit_b"][:12]
    dbg = debug_build(ctx, pkg["name"], sha, "dave", ttl=1)
    assert dbg["digest"] and dbg["digest"] != state["b"]["debug"]
    record_result(ctx, {"package": pkg["name"], "ref": "main", "commit": state["commit_b"], "variant": "runtime",
                        "target": "runtime", "build_key": "f" * 64, "repository": f"{wf_settings.registry}/{pkg['path']}",
                        "tags": [], "status": "failed", "started": "2026-11-01T03:00:00Z", "message": "make failed"})
    conf = GcSettings(nightly_days=14, keep=1, failed_days=7)
    later = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=2)
    r = reg(wf_settings)
    tags_before = set(r.tags(pkg["path"]))
    status_before = {x["id"]: x["status"] for x in image_rows(ctx, pkg["name"])}

    dry = collect(ctx, dry_run=True, package=pkg["name"], today=TODAY, conf=conf, now=later)
    assert set(r.tags(pkg["path"])) == tags_before
    assert {x["id"]: x["status"] for x in image_rows(ctx, pkg["name"])} == status_before
    expired_debug = {i["digest"] for i in dbg["images"]}       # the expired request's debug and runtime
    assert {d["digest"] for d in dry["deleted_manifests"]} == {state["a"]["debug"], state["a"]["full"]} | expired_debug
    assert f"{wf_settings.registry}/{pkg['path']}:nightly-20261001-runtime" in {t["tag"] for t in dry["removed_tags"]}
    assert any(k["digest"] == state["a"]["runtime"] and "promoted" in k["why"] for k in dry["kept"])
    assert [e["requester"] for e in dry["expired_requests"]] == ["dave"]

    done = collect(ctx, dry_run=False, package=pkg["name"], today=TODAY, conf=conf, now=later)
    assert done["deleted_manifests"] == dry["deleted_manifests"] and done["removed_tags"] == dry["removed_tags"]
    assert r.manifest_digest(pkg["path"], state["a"]["debug"]) is None
    assert r.manifest_digest(pkg["path"], state["a"]["full"]) is None
    assert r.manifest_digest(pkg["path"], "keep-a-runtime") == state["a"]["runtime"]      # promoted: kept
    assert r.manifest_digest(pkg["path"], "nightly-20261001-runtime") is None            # its old tag went
    assert r.manifest_digest(pkg["path"], tags.debug_tag("dave", sha)) is None          # expired
    assert r.manifest_digest(pkg["path"], f"{sha}-debug") is None                       # a commit: its tags too
    assert r.manifest_digest(pkg["path"], f"{sha}-runtime") is None
    for v, d in state["b"].items():                                                      # newest: untouched
        assert r.manifest_digest(pkg["path"], f"nightly-20261120-{v}") == d
        assert r.manifest_digest(pkg["path"], f"nightly-{v}") == d
    rows = image_rows(ctx, pkg["name"])
    by_digest = {x["digest"]: x for x in rows if x["digest"]}
    assert by_digest[state["a"]["debug"]]["status"] == "retired"
    assert by_digest[state["a"]["full"]]["status"] == "retired"
    assert by_digest[state["a"]["runtime"]]["status"] == "promoted"
    assert all(x["status"] == "retired" for x in rows if x["build_key"] == "f" * 64)
    # a second run finds nothing more to do
    again = collect(ctx, dry_run=True, package=pkg["name"], today=TODAY, conf=conf, now=later)
    assert not again["deleted_manifests"] and not again["removed_tags"] and not again["retired"]


def _step_reconcile_reports_and_fixes(ctx, pkg, wf_settings, monkeypatch, state):
    assert reconcile(ctx, package=pkg["name"])["status"] == "clean"
    ghost = "sha256:" + uuid.uuid4().hex * 2
    o = record_result(ctx, {"package": pkg["name"], "ref": "main", "commit": state["commit_b"], "variant": "env",
                            "target": "env", "build_key": "e" * 64, "tags": ["ghost-env"],
                            "repository": f"{wf_settings.registry}/{pkg['path']}", "status": "built", "pushed": True,
                            "digest": ghost, "image_id": ghost, "started": "2026-11-20T03:00:00Z"})
    from release_manager.workflows.common import untag
    untag(reg(wf_settings), pkg["path"], "keep-a-runtime")          # someone removed a promoted tag
    monkeypatch.setenv("RELMAN_DB_URL", wf_settings.database_url)
    monkeypatch.setenv("RELMAN_SPECS_DIR", str(next(iter(pkg["specs"].packages.values())).path.parent))
    cli = CliRunner().invoke(main, ["reconcile", "--package", pkg["name"], "--json"])
    assert cli.exit_code == 1, cli.output
    rep = json.loads(cli.stdout)
    assert [m["image"] for m in rep["missing"]] == [o.image]
    assert [p["tag"].rsplit(":", 1)[1] for p in rep["promoted_tags"]] == ["keep-a-runtime"]
    fixed = reconcile(ctx, fix=True, package=pkg["name"])
    assert fixed["status"] == "fixed" and len(fixed["fixed"]) == 2
    assert reg(wf_settings).manifest_digest(pkg["path"], "keep-a-runtime") == state["a"]["runtime"]
    assert {x["id"]: x["status"] for x in image_rows(ctx, pkg["name"])}[o.image] == "retired"
    assert reconcile(ctx, package=pkg["name"])["status"] == "clean"


def test_nightly_lifecycle(ctx, pkg, wf_settings, host_reference, monkeypatch):
    """First nightly, unchanged head (API and CLI), a new commit, gc (dry run, then for real), reconcile."""
    state = {}
    _step_nightly_builds_verifies_tags_and_moves_aliases(ctx, pkg, wf_settings, state)
    _step_unchanged_head_is_skipped_quickly_and_recorded(ctx, pkg)
    with monkeypatch.context() as m:
        _step_cli_nightly_skip_as_json(pkg, wf_settings, m)
    _step_new_commit_builds_and_moves_the_aliases(ctx, pkg, wf_settings, state)
    _step_gc_dry_run_then_gc(ctx, pkg, wf_settings, state)
    with monkeypatch.context() as m:
        _step_reconcile_reports_and_fixes(ctx, pkg, wf_settings, m, state)
