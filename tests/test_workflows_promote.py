"""`relman promote` and `relman retire` on the session's real v1.1.0 images and the local registry."""
from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from test_workflows_helpers import host_reference, make_ctx, webhook, wf_db, wf_settings  # noqa: F401 - fixtures

from release_manager.cli import main
from release_manager.db.models import AuditEvent, Image, Promotion
from release_manager.errors import UsageError
from release_manager.registry import Registry
from release_manager.workflows import verification
from release_manager.workflows.common import record_result
from release_manager.workflows.promote import PromotionRefused, promote, retire

REPO = "fermi-lat/evtselect"


@pytest.fixture(scope="module")
def recorded(wf_settings, specs, api, wf_db, demo_build, host_reference, tmp_path_factory):
    """The three v1.1.0 images recorded; runtime and debug verified for real (passed); full left unverified."""
    ctx = make_ctx(wf_settings, specs, api, wf_db)
    out = {}
    for target, r in demo_build.items():
        out[target] = record_result(ctx, r.as_dict()).image
    work = tmp_path_factory.mktemp("verify")
    for target in ("runtime", "debug"):
        r = demo_build[target]
        v = verification.verify_image(ctx, "evtselect", verification.ensure_local(ctx, r.repository, r.digest),
                                      work / target)
        assert v.verdict == "passed", v
        verification.record(ctx, out[target], v)
    return out


@pytest.fixture
def name(wf_settings):
    """A fresh promoted-tag name; the tags made with it leave the shared registry afterwards."""
    n = f"wf{uuid.uuid4().hex[:8]}"
    yield n
    from release_manager.workflows.common import untag
    r = reg(wf_settings)
    for t in r.tags(REPO):
        if t.startswith(n):
            untag(r, REPO, t)


def reg(settings):
    return Registry(settings.registry)


def count(db, model, *where):
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_promote_is_a_digest_identical_manifest_copy(wf_settings, specs, api, wf_db, recorded, demo_build, name):
    ctx = make_ctx(wf_settings, specs, api, wf_db)
    rep = promote(ctx, "evtselect", "v1.1.0-runtime", f"{name}-runtime", "alice", "release of v1.1.0")
    assert rep["status"] == "promoted"
    digest = demo_build["runtime"].digest
    assert reg(wf_settings).manifest_digest(REPO, f"{name}-runtime") == digest
    assert reg(wf_settings).manifest_digest(REPO, "v1.1.0-runtime") == digest
    with wf_db.read() as s:
        p = s.scalars(select(Promotion).where(Promotion.to_tag == f"{name}-runtime")).one()
        assert p.image_pk == recorded["runtime"] and p.promoted_by == "alice" and p.reason == "release of v1.1.0"
        assert p.from_tag == "v1.1.0-runtime"
        img = s.get(Image, recorded["runtime"])
        assert img.status == "promoted" and f"{name}-runtime" in img.tags
    assert count(wf_db, AuditEvent, AuditEvent.action == "promote", AuditEvent.entity_id == recorded["runtime"],
                 AuditEvent.actor == "alice") >= 1
    # again: nothing changes, nothing fails
    again = promote(ctx, "evtselect", "v1.1.0-runtime", f"{name}-runtime", "alice", "release of v1.1.0")
    assert [i.get("result") for i in again["images"]] == ["unchanged"]
    assert count(wf_db, Promotion, Promotion.to_tag == f"{name}-runtime") == 1


def test_unverified_image_refused_and_nothing_changes(wf_settings, specs, api, wf_db, recorded, name, webhook):
    url, received = webhook
    s = wf_settings.model_copy(update={"webhook_url": url})
    before = count(wf_db, Promotion)
    with pytest.raises(PromotionRefused, match=r"full .* is not verified") as exc:
        promote(make_ctx(s, specs, api, wf_db), "evtselect", "v1.1.0", name, "alice", "all variants")
    assert "--override" in str(exc.value)
    assert count(wf_db, Promotion) == before
    for suffix in ("runtime", "debug", "full"):       # all or nothing: not even the verified ones moved
        assert reg(s).manifest_digest(REPO, f"{name}-{suffix}") is None
    assert len(received) == 1
    body = received[0]["body"]
    assert body["workflow"] == "promote" and body["status"] == "refused" and "not verified" in body["message"]
    assert "SECRET-TOKEN" not in json.dumps(body)
    summary = json.loads(open(s.results_dir / "evtselect" / "workflows" / "promote-evtselect.json").read())
    assert summary["status"] == "refused" and "SECRET-TOKEN" not in json.dumps(summary)


def test_override_promotes_an_unverified_image_and_is_audited(wf_settings, specs, api, wf_db, recorded, demo_build,
                                                              name):
    ctx = make_ctx(wf_settings, specs, api, wf_db)
    with pytest.raises(UsageError, match="--reason"):
        promote(ctx, "evtselect", "v1.1.0-full", f"{name}-full", "carol", "  ", override=True)
    rep = promote(ctx, "evtselect", "v1.1.0-full", f"{name}-full", "carol", "hotfix for the collaboration meeting",
                  override=True)
    assert rep["status"] == "promoted" and rep["overridden"]
    assert reg(wf_settings).manifest_digest(REPO, f"{name}-full") == demo_build["full"].digest
    with wf_db.read() as s:
        img = s.get(Image, recorded["full"])
        assert img.status == "pushed"                     # the science verdict is not invented
        ev = s.scalars(select(AuditEvent).where(AuditEvent.action == "promote-override",
                                                AuditEvent.entity_id == recorded["full"])).one()
        assert ev.actor == "carol" and ev.detail["reason"] == "hotfix for the collaboration meeting"
        assert ev.detail["to_tag"] == f"{name}-full"
    assert count(wf_db, Promotion, Promotion.to_tag == f"{name}-full") == 1


def test_another_digest_on_a_promoted_tag_is_refused(wf_settings, specs, api, wf_db, recorded, demo_build, name):
    ctx = make_ctx(wf_settings, specs, api, wf_db)
    promote(ctx, "evtselect", "v1.1.0-runtime", name, "alice", "first")
    with pytest.raises(PromotionRefused, match="immutable"):
        promote(ctx, "evtselect", "v1.1.0-debug", name, "alice", "second")
    assert reg(wf_settings).manifest_digest(REPO, name) == demo_build["runtime"].digest


def test_dry_run_changes_nothing(wf_settings, specs, api, wf_db, recorded, name):
    before = count(wf_db, Promotion)
    rep = promote(make_ctx(wf_settings, specs, api, wf_db), "evtselect", "v1.1.0-debug", name, "alice", "try",
                  dry_run=True)
    assert rep["status"] == "dry-run"
    assert reg(wf_settings).manifest_digest(REPO, name) is None and count(wf_db, Promotion) == before


def test_retire_removes_only_the_promoted_tag(wf_settings, specs, api, demo_build, name, tmp_path):
    # its own database: retiring changes the image's status, which the module's other tests rely on
    from release_manager.db import connect, migrate
    db = connect(f"sqlite:///{tmp_path}/retire.db", fresh=True)
    migrate.upgrade(db)
    ctx = make_ctx(wf_settings, specs, api, db)
    rows = {t: record_result(ctx, r.as_dict()).image for t, r in demo_build.items()}
    promote(ctx, "evtselect", "v1.1.0-debug", f"{name}-debug", "alice", "to retire", override=True)
    rep = retire(ctx, "evtselect", f"{name}-debug", "alice", "withdrawn: wrong calibration")
    assert rep["images"][0]["result"] == "retired"
    r = reg(wf_settings)
    assert r.manifest_digest(REPO, f"{name}-debug") is None
    assert r.manifest_digest(REPO, "v1.1.0-debug") == demo_build["debug"].digest     # the image itself stays
    with db.read() as s:
        assert s.get(Image, rows["debug"]).status == "retired"
    assert count(db, AuditEvent, AuditEvent.entity_id == rows["debug"], AuditEvent.to_status == "retired",
                 AuditEvent.actor == "alice") == 1


@pytest.mark.parametrize("args, message", [
    (["--by", "alice"], "Missing option '--reason'"),
    (["--by", "a;b", "--reason", "why not"], "not a valid user name"),
    (["--by", "alice", "--reason", "x"], "--reason is required"),
])
def test_cli_inputs(wf_settings, monkeypatch, args, message):
    monkeypatch.setenv("RELMAN_DB_URL", wf_settings.database_url)
    r = CliRunner().invoke(main, ["promote", "evtselect", "v1.1.0-runtime"] + args)
    assert r.exit_code == 2 and message in r.output, r.output
