"""The recording API and the commands that read it back, on each backend."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from test_db_helpers import CHECKS, cli, db, empty_url, result, sha  # noqa: F401 - fixtures

from release_manager.db import (IllegalTransition, InvalidResult, record_build, record_promotion,
                                record_verification, request_debug_build, transition)
from release_manager.db import models as m
from release_manager.errors import NotFound

# the MariaDB and PostgreSQL databases are one per server, shared by this module's tests in file order
pytestmark = pytest.mark.random_order(disabled=True)



def count(db, model, *where):
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_record_build_is_idempotent_on_its_identity(db):
    r = result(package="idem", n=1)
    first = record_build(r, db=db)
    assert first.created and first.status == "pushed"
    again = record_build(r, db=db)
    assert again.action == "unchanged" and again.image == first.image
    assert count(db, m.Image, m.Image.build_key == r["build_key"]) == 1
    # a later result of the same image with one more tag adds the tag, not a row
    more = record_build({**r, "tags": r["tags"] + ["nightly-runtime"]}, db=db)
    assert more.action == "updated" and more.image == first.image
    with db.read() as s:
        img = s.get(m.Image, first.image)
        assert [t.tag for t in img.image_tags] == r["tags"] + ["nightly-runtime"]
        assert img.package.name == "idem" and img.revision.commit == r["commit"]
        assert img.started.isoformat() == "2024-06-02T10:00:00" and img.size == 123_000_000
    assert count(db, m.AuditEvent, m.AuditEvent.action == "record-build", m.AuditEvent.entity_id == first.image) == 1


def test_an_unpushed_image_becomes_pushed_when_its_push_is_recorded(db):
    local = result(package="twostep", pushed=False)
    o1 = record_build(local, db=db)
    assert o1.created and o1.status == "built"
    pushed = result(package="twostep", pushed=True)
    o2 = record_build(pushed, db=db)
    assert o2.image == o1.image and o2.action == "updated" and o2.status == "pushed"
    assert record_build(pushed, db=db).action == "unchanged"
    assert count(db, m.Image, m.Image.build_key == pushed["build_key"]) == 1


def test_a_failed_build_is_recorded_as_failed(db):
    r = result(package="broken", status="failed", image_id=None, digest=None, pushed=False,
               message="build failed at Step 5/9")
    o = record_build(r, db=db)
    assert o.created and o.status == "failed"
    assert record_build(r, db=db).action == "unchanged"
    retry = result(package="broken")            # the same build key, built this time
    assert record_build(retry, db=db).created
    with pytest.raises(IllegalTransition, match="cannot go from failed to verifying"):
        transition(o.image, "verifying", actor="ci", db=db)


def test_the_package_manifest_is_stored_with_the_image(db, tmp_path):
    mf = tmp_path / "runtime.packages.json"
    mf.write_text(json.dumps({"image_id": sha("x"), "manager": "dpkg",
                              "packages": [{"name": "bash", "version": "5.2", "arch": "amd64"}] * 3}))
    o = record_build(result(package="manifested", manifest_file=str(mf)), db=db)
    with db.read() as s:
        man = s.scalar(select(m.PackageManifest).where(m.PackageManifest.image_pk == o.image))
        assert man.manager == "dpkg" and man.package_count == 3 and man.packages[0]["name"] == "bash"


def test_verification_and_promotion_move_the_image_and_are_recorded(db):
    o = record_build(result(package="flow", n=3), db=db)
    with pytest.raises(IllegalTransition, match="cannot go from verifying to promoted|from pushed to promoted"):
        record_promotion(o.image, "3.0.0-runtime", actor="alice", reason="release", db=db)
    run1 = record_verification(o.image, reference="host-build", workload="evtselect-3fhl", verdict="failed",
                               checks=CHECKS[:1] + [{**CHECKS[1], "result": "fail"}], report_location="/r/1.html",
                               started="2024-06-04T11:00:00Z", finished="2024-06-04T11:10:00Z",
                               summary={"failed": 1}, actor="ci", db=db)
    with db.read() as s:
        assert s.get(m.Image, o.image).status == "verification-failed"
        run = s.get(m.VerificationRun, run1)
        assert [c.result for c in run.checks] == ["pass", "fail"] and run.checks[0].hdu == "EVENTS"
    run2 = record_verification(o.image, reference="host-build", workload="evtselect-3fhl", verdict="passed",
                               checks=CHECKS, started="2024-06-04T12:00:00Z", actor="ci", db=db)
    assert run2 != run1
    pid = record_promotion(o.image, "3.0.0-runtime", actor="alice", reason="release 3.0.0", db=db)
    record_promotion(o.image, "latest-runtime", actor="alice", reason="also latest", db=db)
    with db.read() as s:
        img = s.get(m.Image, o.image)
        assert img.status == "promoted"
        assert {"3.0.0-runtime", "latest-runtime"} <= {t.tag for t in img.image_tags}
        assert s.get(m.Promotion, pid).promoted_by == "alice"
        trail = [(e.from_status, e.to_status) for e in s.scalars(
            select(m.AuditEvent).where(m.AuditEvent.entity == "image", m.AuditEvent.entity_id == o.image)
            .order_by(m.AuditEvent.id))]
    assert trail == [(None, "pushed"), ("pushed", "verifying"), ("verifying", "verification-failed"),
                     ("verification-failed", "verifying"), ("verifying", "verified"), ("verified", "promoted"),
                     ("promoted", "promoted")]


def test_promoted_images_retire_only_explicitly_with_a_reason(db, cli):
    o = record_build(result(package="retiring"), db=db)
    record_verification(o.image, reference="r", workload="w", verdict="passed", checks=CHECKS, db=db)
    record_promotion(o.image, "v9-runtime", actor="alice", db=db)
    with pytest.raises(IllegalTransition, match="explicit request with a reason"):
        transition(o.image, "retired", actor="gc", db=db)
    with pytest.raises(IllegalTransition):
        transition(o.image, "retired", actor="gc", explicit=True, db=db)      # no reason
    r = cli("images", "retire", str(o.image), "--reason", "CVE in glibc", "--actor", "bob")
    assert r.exit_code == 0 and "retired" in r.output
    r = cli("images", "retire", str(o.image), "--reason", "again")
    assert r.exit_code == 0 and "already" in r.output
    r = cli("audit", "--package", "retiring")
    assert "bob" in r.output and "promoted -> retired" in r.output


def test_illegal_transitions_are_refused_with_exit_code_2(db, cli):
    o = record_build(result(package="illegal", pushed=False), db=db)
    with pytest.raises(IllegalTransition) as err:
        transition(o.image, "promoted", actor="x", db=db)
    assert err.value.exit_code == 2 and "from built it may go to failed, pushed, retired" in str(err.value)
    with pytest.raises(IllegalTransition, match="unknown status"):
        transition(o.image, "shipped", actor="x", db=db)
    r = cli("images", "transition", str(o.image), "verified", "--reason", "trust me")
    assert r.exit_code == 2 and "cannot go from built to verified" in r.output
    assert count(db, m.AuditEvent, m.AuditEvent.entity_id == o.image, m.AuditEvent.entity == "image") == 1


def test_debug_build_requests(db):
    rid = request_debug_build("alice", "evtselect", "feature/x", db=db)
    with db.read() as s:
        req = s.get(m.DebugRequest, rid)
        assert req.status == "requested" and req.expires_at > req.created_at and req.package.name == "evtselect"
    from release_manager.db import update_debug_request
    assert update_debug_request(rid, "building", db=db) == "building"
    with pytest.raises(IllegalTransition):
        update_debug_request(rid, "requested", db=db)
    from release_manager.errors import UsageError
    with pytest.raises(UsageError, match="not a valid user name"):
        request_debug_build("Alice Smith", "evtselect", "v1", db=db)


def test_a_request_placeholder_is_filled_by_its_build_result(db):
    from release_manager.db import create_image_request
    url = "https://jenkins.example/job/nightly/77/"
    req = create_image_request("nightly-pkg", "main", "runtime", "127.0.0.1:5000/fermi-lat/nightly-pkg",
                               build_url=url, requested_by="cron", db=db)
    transition(req.image, "building", actor="jenkins", db=db)
    o = record_build(result(package="nightly-pkg", build_url=url), db=db)
    assert o.image == req.image and o.status == "pushed"


# ---------------------------------------------------------------------- bad input

def test_malformed_results_name_the_file_and_field_and_record_nothing(db, cli, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(result(package="malformed-good")))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([result(package="malformed-bad"), {**result(package="malformed-bad", n=2),
                                                                 "digest": "md5:xyz"}]))
    r = cli("db", "record-build", str(good), str(bad))
    assert r.exit_code == 2
    assert f"{bad} [result 1]: field 'digest'" in r.output and "nothing was recorded" in r.output
    missing = tmp_path / "missing-field.json"
    doc = result(package="malformed-bad")
    del doc["build_key"]
    missing.write_text(json.dumps(doc))
    r = cli("db", "record-build", str(missing))
    assert r.exit_code == 2 and f"{missing}: field 'build_key': Field required" in r.output
    notjson = tmp_path / "notjson.json"
    notjson.write_text("{oops")
    r = cli("db", "record-build", str(notjson))
    assert r.exit_code == 2 and f"{notjson}: not valid JSON" in r.output
    r = cli("db", "record-build", str(tmp_path / "absent.json"))
    assert r.exit_code == 2 and "no such file" in r.output
    with db.read() as s:
        assert not s.scalars(select(m.Package).where(m.Package.name.like("malformed%"))).all()
    with pytest.raises(InvalidResult, match="field 'pushed': pushed is true but there is no digest|field 'digest'"):
        record_build({**result(), "digest": None}, db=db)


def test_record_build_command_records_archived_results(db, cli, tmp_path):
    f = tmp_path / "results.json"                    # the list `relman build --json` prints
    f.write_text(json.dumps([result(package="archived", variant=v) for v in ("runtime", "debug", "full")]))
    r = cli("db", "record-build", str(f), "--actor", "jenkins")
    assert r.exit_code == 0, r.output
    assert r.output.count("created") == 3
    r = cli("db", "record-build", str(f), "--json")
    assert [o["action"] for o in json.loads(r.output)] == ["unchanged"] * 3


# ---------------------------------------------------------------------- reading back

def test_images_list_show_history_audit(db, cli):
    ids = [record_build(result(package="shown", variant=v, n=n), db=db).image
           for n in (1, 2) for v in ("runtime", "debug")]
    record_verification(ids[0], reference="host", workload="3fhl", verdict="passed", checks=CHECKS, db=db)
    record_promotion(ids[0], "stable-runtime", actor="alice", reason="ok", db=db)

    r = cli("images", "list", "--package", "shown", "--json")
    rows = json.loads(r.output)
    assert r.exit_code == 0 and {x["id"] for x in rows} == set(ids)
    assert rows[0]["started"] >= rows[-1]["started"]                     # newest first
    r = cli("images", "list", "--package", "shown", "--variant", "debug", "--status", "pushed", "--json")
    assert {x["id"] for x in json.loads(r.output)} == {ids[1], ids[3]}
    r = cli("images", "list", "--package", "shown")
    assert r.exit_code == 0 and r.output.splitlines()[0].split()[:3] == ["ID", "PACKAGE", "VARIANT"]
    assert len(r.output.splitlines()) == 5

    for ref in (str(ids[0]), sha("shown-runtime-1-digest"), sha("shown-runtime-1-digest")[:19],
                sha("shown-runtime-1-image"), "stable-runtime", "shown:v1.1.0-runtime",
                "127.0.0.1:5000/fermi-lat/shown:v1.1.0-runtime",
                "127.0.0.1:5000/fermi-lat/shown@" + sha("shown-runtime-1-digest")):
        r = cli("images", "show", ref, "--json")
        assert r.exit_code == 0, (ref, r.output)
        d = json.loads(r.output)
        assert d["id"] == ids[0], ref
    assert d["status"] == "promoted" and d["verifications"][0]["checks"] == 2
    assert d["promotions"][0]["to_tag"] == "stable-runtime"
    r = cli("images", "show", "stable-runtime")
    assert "promotion" in r.output and "verification" in r.output and "audit:" in r.output

    r = cli("history", "shown")
    assert r.exit_code == 0 and "4 image(s), 1 verification(s), 1 promotion(s)" in r.output
    assert "-> stable-runtime by alice" in r.output
    h = json.loads(cli("history", "shown", "--json").output)
    assert len(h["images"]) == 4 and h["verifications"][0]["failed_checks"] == 0

    r = cli("audit", "--package", "shown", "--json")
    actions = [a["action"] for a in json.loads(r.output)]
    assert actions[0] == "create-package" and actions.count("record-build") == 4 and "promote" in actions
    r = cli("audit", "--package", "shown")
    assert r.exit_code == 0 and "verified -> promoted" in r.output


def test_unknown_things_are_not_found_with_what_was_searched(db, cli):
    record_build(result(package="other", n=1), db=db)
    record_build(result(package="other2", n=1), db=db)
    cases = {
        ("images", "show", "99999"): "no image has row id 99999",
        ("images", "show", "sha256:" + "0" * 64): "no registry digest or image id is or starts with sha256:000",
        ("images", "show", "no-such-tag"): "searched tag 'no-such-tag' of every package",
        ("images", "show", "other:v9-runtime"): "searched tag 'v9-runtime' of package other",
        ("history", "no-such-package"): "package 'no-such-package' not found",
        ("images", "list", "--package", "nope"): "package 'nope' not found",
        ("audit", "--package", "nope"): "package 'nope' not found",
    }
    for args, msg in cases.items():
        r = cli(*args)
        assert r.exit_code == 1, (args, r.output)
        assert msg in r.output, (args, r.output)
    r = cli("images", "show", "v1.1.0-runtime")          # both packages carry it
    assert r.exit_code == 2 and "ambiguous" in r.output and "other:v1.1.0-runtime" in r.output
    with pytest.raises(NotFound):
        transition("nothing-here", "retired", actor="x", db=db)


def test_a_real_build_result_object_records(db, tmp_path):
    """BuildResult.as_dict() itself (not a hand-written dict): catches drift between build.py and the recorder."""
    from release_manager.build import BuildResult, _write_json
    r = BuildResult("fromdataclass", "v2.0.0", "ab" * 20, "debug", "debug", "c" * 64,
                    "127.0.0.1:5000/fermi-lat/fromdataclass", ["v2.0.0-debug", "bk-" + "c" * 40],
                    status="built", image_id=sha("dc-image"), size=10, layers=[{"digest": sha("l"), "size": None}],
                    labels={"relman.build-key": "c" * 64}, base_digest=sha("base"), spec_hash="d" * 64,
                    checks=[{"name": "ldd", "ok": True, "detail": ""}], started="2024-07-01T08:00:00Z",
                    finished="2024-07-01T08:09:00Z", duration=540.0, builder_host="h", build_url=None)
    path = tmp_path / "debug.json"
    _write_json(path, r.as_dict())                  # exactly as the builder writes it
    from release_manager.db import load_result_files, record_builds
    [o] = record_builds(load_result_files([path]), db=db)
    assert o.created and o.status == "built"


def test_non_finite_numbers_are_stored_as_null_on_every_backend(db):
    o = record_build(result(package="nan", checks=[{"name": "size", "ratio": float("nan")}]), db=db)
    nan_check = {**CHECKS[0], "statistic": float("nan"), "p_value": float("inf"),
                 "thresholds": {"p_value": float("-inf")}}
    run = record_verification(o.image, reference="r", workload="w", verdict="passed", checks=[nan_check],
                              summary={"chi2": float("nan")}, db=db)
    with db.read() as s:
        r = s.get(m.VerificationRun, run)
        assert r.summary == {"chi2": None} and r.checks[0].statistic is None and r.checks[0].p_value is None
        assert r.checks[0].thresholds == {"p_value": None}
        assert s.get(m.Image, o.image).checks == [{"name": "size", "ratio": None}]


def test_bad_verification_checks_are_refused_before_anything_is_written(db):
    from release_manager.errors import UsageError
    o = record_build(result(package="badchecks"), db=db)
    with pytest.raises(UsageError, match="verification check 1: field 'result': 'great' is not one of"):
        record_verification(o.image, reference="r", workload="w", verdict="passed",
                            checks=[CHECKS[0], {**CHECKS[1], "result": "great"}], db=db)
    with pytest.raises(UsageError, match="verification check 0: field 'test' is missing"):
        record_verification(o.image, reference="r", workload="w", verdict="passed",
                            checks=[{"file": "f", "result": "pass"}], db=db)
    with pytest.raises(UsageError, match="verdict 'meh' is not one of"):
        record_verification(o.image, reference="r", workload="w", verdict="meh", db=db)
    assert count(db, m.VerificationRun, m.VerificationRun.image_pk == o.image) == 0
    with db.read() as s:
        assert s.get(m.Image, o.image).status == "pushed"
