"""Channels (the spec's moving tags a pipeline runs from): `relman promote --channel`, rollback, `relman
channels`, and retire refused while a channel points at the image. On two real, verified runtime images of
an evtselect copy (its own registry repository) and the local registry; nothing mocked."""
from __future__ import annotations

import json
import uuid

import git
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from test_workflows_helpers import drop_repository, host_reference, make_ctx, own_package, wf_db, wf_settings  # noqa: F401

from release_manager.build import Builder
from release_manager.cli import main
from release_manager.db.models import AuditEvent, ChannelMove, Promotion
from release_manager.errors import UsageError
from release_manager.farm import runs
from release_manager.farm.site import load_site
from release_manager.registry import Registry
from release_manager.sif import build_sif
from release_manager.workflows import verification
from release_manager.workflows.common import record_result
from release_manager.workflows.promote import PromotionRefused, channel_report, promote, retire
from release_manager.workflows.reconcile import reconcile


@pytest.fixture(scope="module")
def pkg(wf_settings, api, wf_db, demo_repo, host_reference, tmp_path_factory):  # noqa: F811
    """Two runtime images of an evtselect copy, both verified against the host build: v1.1.0, and v1.1.1 (the
    same code plus a README line: another image, the same science). {name, specs, images: {ref: (pk, digest)}}."""
    name = f"ch{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("channels")
    repo, specs = own_package(tmp, demo_repo, name)
    g = git.Repo(repo)
    g.git.checkout("-q", "v1.1.0")
    (repo / "README.channels").write_text("a change that builds another image with the same science\n")
    g.git.add("README.channels")
    g.git.commit("-q", "-m", "channels fixture", "--author", "T <t@example.org>")
    g.git.tag("v1.1.1")
    ctx = make_ctx(wf_settings, specs, api, wf_db)
    images = {}
    for ref in ("v1.1.0", "v1.1.1"):
        r = Builder(wf_settings, specs, echo=lambda m: None, api=api).build(name, ref, ["runtime"], push=True)[0]
        pk = record_result(ctx, r.as_dict()).image
        v = verification.verify_image(ctx, name, verification.ensure_local(ctx, r.repository, r.digest),
                                      tmp / f"verify-{ref}")
        assert v.verdict == "passed", v
        verification.record(ctx, pk, v)
        images[ref] = (pk, r.digest)
    assert images["v1.1.0"][1] != images["v1.1.1"][1]
    # each image's SIF (Apptainer in its tool image), pushed as <tag>-sif and recorded: the channel's SIF follows
    sifs = {ref: build_sif(wf_settings, specs, name, f"{ref}-runtime", push=True, api=api, db=wf_db).registry_digest
            for ref in images}
    yield {"name": name, "specs": specs, "images": images, "sifs": sifs, "path": f"{wf_settings.namespace}/{name}",
           "specs_dir": tmp / f"{name}-specs"}
    drop_repository(wf_settings, f"{wf_settings.namespace}/{name}", api)


def moves(db):
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(ChannelMove))


def test_promote_moves_the_channel_rolls_back_and_records_each_move(wf_settings, api, wf_db, pkg, tmp_path):
    ctx = make_ctx(wf_settings, pkg["specs"], api, wf_db)
    name, reg = pkg["name"], Registry(wf_settings.registry)
    (a_pk, a), (b_pk, b) = pkg["images"]["v1.1.0"], pkg["images"]["v1.1.1"]
    sif_a, sif_b = pkg["sifs"]["v1.1.0"], pkg["sifs"]["v1.1.1"]
    rep = promote(ctx, name, "v1.1.0-runtime", None, "alice", "first batch image", channel="batch")
    assert rep["status"] == "promoted" and rep["channel"]["result"] == "moved"
    assert rep["channel"]["previous_digest"] is None
    assert reg.manifest_digest(pkg["path"], "batch") == a
    # Apptainer sites run `--image REPO:batch` from REPO:batch-sif: it follows the channel
    assert rep["channel"]["sif"]["result"] == "moved" and reg.manifest_digest(pkg["path"], "batch-sif") == sif_a
    rep = promote(ctx, name, "v1.1.1-runtime", None, "bob", "v1.1.1 for batch", channel="batch")
    assert rep["channel"]["result"] == "moved" and rep["channel"]["previous_digest"] == a
    assert reg.manifest_digest(pkg["path"], "batch") == b
    assert rep["channel"]["sif"]["previous_digest"] == sif_a and reg.manifest_digest(pkg["path"], "batch-sif") == sif_b
    # a farm job from the channel takes its SIF; the SIF of another image is refused (it would run other software)
    site = load_site("local-slurm-apptainer")[0]
    image = f"{wf_settings.registry}/{pkg['path']}:batch"
    job = runs.submit(wf_settings, site, image, ["evtselect", "--help"], 1, dry_run=True, workdir=tmp_path)
    assert job.sif.endswith(f"@{sif_b}") and job.image.endswith(f"@{b}")
    with pytest.raises(UsageError, match=f"was built from {a}, not from the image"):
        runs.submit(wf_settings, site, image, ["evtselect", "--help"], 1, dry_run=True, workdir=tmp_path,
                    sif=f"{wf_settings.registry}/{pkg['path']}:v1.1.0-runtime-sif")
    # the same again: nothing moves, nothing recorded
    again = promote(ctx, name, "v1.1.1-runtime", None, "bob", "v1.1.1 for batch", channel="batch")
    assert again["channel"]["result"] == "unchanged"
    # rollback: the earlier promoted tag; no new promotion, the channel moves back
    with wf_db.read() as s:
        promos = s.scalar(select(func.count()).select_from(Promotion))
    back = promote(ctx, name, "release-v1.1.0-runtime", None, "carol", "v1.1.1 breaks the merge step",
                   channel="batch")
    assert back["channel"]["result"] == "moved" and back["channel"]["previous_digest"] == b
    assert [i["result"] for i in back["images"]] == ["unchanged"]
    assert reg.manifest_digest(pkg["path"], "batch") == a and reg.manifest_digest(pkg["path"], "batch-sif") == sif_a
    with wf_db.read() as s:
        assert s.scalar(select(func.count()).select_from(Promotion)) == promos
        rows = s.scalars(select(ChannelMove).order_by(ChannelMove.id)).all()
        mine = [(m.image_pk, m.digest, m.previous_digest, m.moved_by, m.from_tag) for m in rows
                if m.package.name == name]
        assert mine == [(a_pk, a, None, "alice", "release-v1.1.0-runtime"),
                        (b_pk, b, a, "bob", "release-v1.1.1-runtime"),
                        (a_pk, a, b, "carol", "release-v1.1.0-runtime")]
        audited = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "move-channel", AuditEvent.package_id == rows[-1].package_id))
        assert audited == 3
    report = channel_report(ctx, name)["channels"]
    assert [c["name"] for c in report] == ["batch"]
    assert report[0]["in_step"] and report[0]["registry_digest"] == a and len(report[0]["history"]) == 3
    # `relman channels` (JSON and text), on the copy's specs folder
    env = {"RELMAN_DB_URL": wf_settings.database_url, "RELMAN_REGISTRY": wf_settings.registry,
           "RELMAN_SPECS_DIR": str(pkg["specs_dir"])}
    r = CliRunner().invoke(main, ["channels", name, "--json"], env=env)
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)["channels"][0]
    assert got["current"]["moved_by"] == "carol" and got["registry_digest"] == a
    r = CliRunner().invoke(main, ["channels", name], env=env)
    assert r.exit_code == 0 and f"registry {wf_settings.registry}/{pkg['path']}:batch = {a}" in r.output, r.output
    assert "by carol: v1.1.1 breaks the merge step" in r.output
    # retire refused while the channel points at it; the other one may go
    with pytest.raises(PromotionRefused, match="channel.*batch.*point at it"):
        retire(ctx, name, "release-v1.1.0-runtime", "dave", "old")
    assert retire(ctx, name, "release-v1.1.1-runtime", "dave", "superseded")["status"] == "retired"
    # a move outside relman shows
    reg.retag(pkg["path"], b, "batch")
    assert not channel_report(ctx, name)["channels"][0]["in_step"]
    # and `relman reconcile` reports it, and with --fix puts the channel back on its last recorded move
    rep = reconcile(ctx, package=name)
    tag = f"{wf_settings.registry}/{pkg['path']}:batch"
    assert rep["status"] == "differences" and [(c["tag"], c["digest"], c["registry"]) for c in rep["channels"]] \
        == [(tag, a, b)]
    assert tag not in rep["untracked"]
    rep = reconcile(ctx, fix=True, package=name)
    assert rep["status"] == "fixed" and rep["fixed"][0]["now"] == a
    assert reg.manifest_digest(pkg["path"], "batch") == a
    assert reconcile(ctx, package=name)["status"] == "clean"
    # the channel's SIF too: moved by hand to the other image's SIF, found and put back
    reg.retag(pkg["path"], sif_b, "batch-sif")
    rep = reconcile(ctx, package=name)
    assert [(c["channel"], c["digest"], c["registry"]) for c in rep["channels"]] == [("batch-sif", sif_a, sif_b)]
    assert reconcile(ctx, fix=True, package=name)["status"] == "fixed"
    assert reg.manifest_digest(pkg["path"], "batch-sif") == sif_a
    assert reconcile(ctx, package=name)["status"] == "clean"


def test_a_channel_takes_only_verified_images_of_its_variant(wf_settings, api, wf_db, pkg):
    ctx = make_ctx(wf_settings, pkg["specs"], api, wf_db)
    name = pkg["name"]
    before = moves(wf_db)
    with pytest.raises(UsageError, match="declares the channel\\(s\\) batch"):
        promote(ctx, name, "v1.1.0-runtime", None, "alice", "typo", channel="bacth")
    with pytest.raises(UsageError, match="only at verified"):
        promote(ctx, name, "v1.1.0-runtime", None, "alice", "why not", channel="batch", override=True)
    dry = promote(ctx, name, "v1.1.0-runtime", f"dry-{uuid.uuid4().hex[:6]}", "alice", "look", channel="batch",
                  dry_run=True)
    assert dry["status"] == "dry-run" and dry["channel"]["result"] in ("would move", "unchanged")
    assert moves(wf_db) == before
