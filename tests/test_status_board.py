"""`relman status`: the board from the real specs and a SQLite release database filled through
db/records.py (no engine). The site is checked for content and links here, in Chromium in
test_status_browser.py."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from test_db_helpers import result, sha

from release_manager.config import PROJECT_ROOT
from release_manager.db.models import Image

DAYS = ["2024-06-01", "2024-06-02", "2024-06-03"]


@pytest.fixture(scope="module")
def board_db(tmp_path_factory):
    """evtselect: three nightlies (runtime, full), verified with reports on disk (one failed, one a URL),
    one promoted; sciencetools: one release build; oldpkg: in the database only."""
    from release_manager.db import connect, migrate, record_build, record_promotion, record_verification
    folder = tmp_path_factory.mktemp("board")
    url = f"sqlite:///{folder / 'relman.db'}"
    db = connect(url, fresh=True)
    migrate.upgrade(db)
    ids = {}
    for n, day in enumerate(DAYS):
        for variant, size in (("runtime", 90_000_000 + n * 1_000_000), ("full", 590_000_000 + n * 2_000_000)):
            tag = f"nightly-{day.replace('-', '')}-{variant}"
            o = record_build(result("evtselect", variant, n=10 + n, tags=[tag], size=size,
                                    started=f"{day}T03:00:00Z", finished=f"{day}T03:10:00Z"), db=db)
            ids[(variant, n)] = o.image
    reports = folder / "reports"
    for n in range(3):
        verdict = "failed" if n == 1 else "passed"
        where = reports / f"run{n}"
        where.mkdir(parents=True)
        (where / "summary.json").write_text(json.dumps({"verdict": verdict}))
        (where / "report.html").write_text(f"<html><body>report {n}</body></html>")
        record_verification(ids[("runtime", n)], reference="host", workload="select", verdict=verdict,
                            started=f"{DAYS[n]}T03:20:00Z", finished=f"{DAYS[n]}T03:2{n + 1}:30Z",
                            report_location=str(where / "summary.json"), db=db)
    record_verification(ids[("full", 2)], reference="host", workload="select", verdict="passed",
                        started=f"{DAYS[2]}T04:00:00Z", finished=f"{DAYS[2]}T04:01:00Z",
                        report_location="https://jenkins.example/job/evtselect/nightly/3/report.html", db=db)
    record_promotion(ids[("runtime", 2)], "stable-runtime", actor="alice", reason="test", db=db)
    from release_manager.db.channels import record_channel_move
    record_channel_move("evtselect", "batch", ids[("runtime", 2)], sha("evtselect-runtime-12-digest"), "stable-runtime",
                        None, actor="bob", reason="batch runs it", db=db)
    from release_manager.db import record_sif
    record_sif("evtselect", image_digest=sha("evtselect-runtime-12-digest"), source="docker://x", sha256=sha("sif"),
               size=33_000_000, apptainer_version="1.4.5", signer=sha("key"),
               registry_ref="oras://127.0.0.1:5000/fermi-lat/evtselect:nightly-20240603-runtime-sif", db=db)
    record_build(result("sciencetools", "runtime", n=1), db=db)
    record_build(result("oldpkg", "runtime", n=1), db=db)
    yield {"url": url, "ids": ids, "folder": folder}
    db.dispose()


@pytest.fixture
def run(board_db, tmp_path, monkeypatch):
    from release_manager.cli import main
    monkeypatch.setenv("RELMAN_DB_URL", board_db["url"])
    monkeypatch.setenv("RELMAN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RELMAN_CONFIG", raising=False)

    def go(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    return go


def _rows(run):
    r = run("status", "--json")
    assert r.exit_code == 0, r.output
    return {row["package"]: row for row in json.loads(r.output)}


def test_one_row_per_package_of_specs_and_database(run):
    rows = _rows(run)
    specs = {p.stem for p in (PROJECT_ROOT / "image_specs").glob("*.yaml") if p.stem != "platforms"}
    assert set(rows) == specs | {"oldpkg"}
    assert rows["oldpkg"]["in_specs"] is False and rows["oldpkg"]["in_database"] is True
    assert rows["asp"]["in_database"] is False and rows["asp"]["latest"] == {}


def test_evtselect_row_facts(run, board_db):
    ev = _rows(run)["evtselect"]
    assert (ev["build_platform"], ev["agent_label"], ev["run_platforms"]) == (
        "debian12-local", "local-builder", ["debian12-local"])
    assert ev["ready"] is True and ev["placeholders"] == 0
    assert "os:libcfitsio10" in ev["special_dependencies"]
    rt = ev["latest"]["runtime"]
    assert rt["image"] == board_db["ids"][("runtime", 2)]
    assert rt["tag"] == "nightly-20240603-runtime" and rt["size"] == 92_000_000
    assert rt["verification"]["verdict"] == "passed" and rt["verification"]["date"].startswith("2024-06-03T03:23")
    assert ev["latest"]["full"]["verification"]["report"].startswith("https://jenkins.example/")
    assert rt["sif"]["signed"] is True and rt["sif"]["size"] == 33_000_000 and ev["latest"]["full"]["sif"] is None
    assert rt["sif"]["registry_ref"].endswith(":nightly-20240603-runtime-sif")
    assert ev["promoted_tags"] == ["stable-runtime"]
    batch = ev["channels"]["batch"]
    assert (batch["tag"], batch["image"], batch["by"]) == ("stable-runtime", board_db["ids"][("runtime", 2)], "bob")
    assert batch["digest"] == sha("evtselect-runtime-12-digest") and batch["at"]
    n = ev["nightly"]
    assert n["tag"] == "nightly-20240603-full" and n["state"] == "verified"
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    expected_age = (now - dt.datetime(2024, 6, 3, 3, 10)).total_seconds() / 86400
    assert abs(n["age_days"] - expected_age) < 0.2
    assert ev["jenkins_job"] == "evtselect/nightly" and "evtselect/promote" in ev["jenkins_jobs"]
    assert [p["seconds"] for p in ev["series"]["verification_seconds"] if p["variant"] == "runtime"] == [90, 150, 210]
    assert len(ev["series"]["size"]) == 6


def test_placeholders_make_a_package_not_ready(run):
    gr = _rows(run)["glastrelease"]
    assert gr["ready"] is False and gr["placeholders"] == len(gr["placeholder_fields"]) > 0
    assert gr["nightly"] is None and gr["jenkins_job"].startswith("glastrelease/")


def test_terminal_view_names_every_package(run):
    r = run("status")
    assert r.exit_code == 0, r.output
    for name in ("evtselect", "sciencetools", "glastrelease", "oldpkg", "nightly-20240603-runtime", "stable-runtime"):
        assert name in r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("evtselect"))
    assert line.count("+sif (signed)") == 1        # the runtime nightly has its SIF, the full one none
    assert "stable-runtime,batch=stable-runtime" in line    # the channel and the promoted tag it points at


def test_history_shows_channel_moves(run):
    r = run("history", "evtselect", "--json")
    assert r.exit_code == 0, r.output
    moves = json.loads(r.output)["channel_moves"]
    assert [(m["channel"], m["from_tag"], m["moved_by"]) for m in moves] == [("batch", "stable-runtime", "bob")]
    r = run("history", "evtselect")
    assert r.exit_code == 0 and "channel batch -> stable-runtime" in r.output and "(batch runs it)" in r.output, r.output


def test_unknown_package_is_refused(run):
    r = run("status", "--package", "nosuch")
    assert r.exit_code == 2 and "nosuch" in r.output and "evtselect" in r.output


def test_site_pages_links_and_reports(run, tmp_path):
    site = tmp_path / "site"
    r = run("status", "--html", str(site))
    assert r.exit_code == 0, r.output
    index = (site / "index.html").read_text()
    rows = re.findall(r'<tr data-package="([^"]+)"', index)
    assert rows == sorted(_rows(run))
    for page in site.glob("*.html"):
        text = page.read_text()
        assert "<script src" not in text and "<link" not in text  # self-contained
        for href in re.findall(r'href="([^"]+)"', text):
            if href.startswith("https://"):
                continue
            assert (site / href).is_file(), f"{page.name}: link {href} does not resolve"
    ev = (site / "package-evtselect.html").read_text()
    assert ev.count("<svg") == 2 and ev.count("<polyline") == 4  # size: runtime, full; duration: runtime, full
    assert "<th>channels</th><td>batch = stable-runtime (sha256:" in ev and "moved by bob" in ev
    assert "stable-runtime, batch=stable-runtime" in index
    copied = sorted(p.relative_to(site).as_posix() for p in (site / "reports").rglob("*.html"))
    assert len(copied) == 3 and all("reports/run-" in c for c in copied)


def test_site_refuses_a_foreign_folder(run, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    r = run("status", "--html", str(other))
    assert r.exit_code == 2 and "other content" in r.output
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_site_is_replaced_as_a_whole(run, tmp_path):
    site = tmp_path / "site"
    assert run("status", "--html", str(site)).exit_code == 0
    (site / "stale.html").write_text("old")
    assert run("status", "--html", str(site)).exit_code == 0
    assert not (site / "stale.html").exists() and (site / "index.html").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site-")]


def test_site_file_for_layers_is_checked(tmp_path):
    from release_manager.cacheplan import load_site, parse_size
    from release_manager.errors import UsageError
    site = load_site(PROJECT_ROOT / "image_specs" / "cache-plans" / "demo-farm.yaml")
    assert site.budget_per_image == 10 ** 9 and site.images
    for path in (PROJECT_ROOT / "image_specs" / "cache-plans").glob("*.yaml"):   # every shipped site file reads
        assert load_site(path).images, path
    assert load_site(PROJECT_ROOT / "image_specs" / "cache-plans" / "l1-farm.yaml").budget_per_image == 400 * 10 ** 6
    assert parse_size("800MiB", "x") == 800 * 2 ** 20 and parse_size(5, "x") == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("images: []\n")
    with pytest.raises(UsageError, match="bad.yaml: field 'images'"):
        load_site(bad)
    bad.write_text("images: [a:b]\nbudget_per_image: lots\n")
    with pytest.raises(UsageError, match="budget_per_image.*'lots'"):
        load_site(bad)
    bad.write_text("images: [a:b]\nimagez: 1\n")
    with pytest.raises(UsageError, match="unknown field"):
        load_site(bad)
    assert not Path(tmp_path / "bad.yaml.tmp").exists()


# ---------------------------------------------------------------------- the terminal view's board

from test_db_helpers import db, empty_url  # noqa: E402,F401 - fixtures (every backend)


def test_terminal_board_picks_the_same_images_as_the_history(db):
    """The terminal view lets the database pick the shown images (window functions): the rows must be
    those made from the whole history, without the plotted series, on SQLite, MariaDB and PostgreSQL.
    The last build of a variant failed (the one before is shown), the last nightly failed (it is still
    the nightly shown), and a tag that only looks like a nightly's does not count."""
    from release_manager.config import load_settings
    from release_manager.db import record_build, record_promotion, record_verification
    from release_manager.db.queries import status_board
    from release_manager.spec import load_specs
    from release_manager.status import NIGHTLY_PREFIX, rows
    ids = []
    for n, (variant, status, tag) in enumerate([
            ("runtime", "built", "nightly-20240601-runtime"), ("full", "built", "nightly-20240601-full"),
            ("runtime", "built", "nightly-20240602-runtime"), ("runtime", "failed", "nightly-20240603-runtime"),
            ("debug", "built", "v1.0-debug"), ("runtime", "failed", "nightly-x-runtime")]):
        over = dict(status="failed", pushed=False, digest=None) if status == "failed" else {}
        ids.append(record_build(result("evtselect", variant, n=n, tags=[tag], **over), db=db).image)
    record_build(result("sciencetools", "runtime", n=1), db=db)
    record_verification(ids[0], reference="host", workload="w", verdict="failed", db=db)
    record_verification(ids[2], reference="host", workload="w", verdict="passed", db=db)
    record_promotion(ids[2], "stable-runtime", actor="alice", reason="test", db=db)
    from release_manager.db.channels import record_channel_move
    with db.read() as s:
        digest = s.get(Image, ids[2]).digest
    record_channel_move("evtselect", "batch", ids[2], digest, "stable-runtime", None, actor="alice", db=db)
    settings, specs = load_settings(), load_specs(PROJECT_ROOT / "image_specs")
    now = dt.datetime(2024, 7, 1)
    with db.read() as s:
        full = rows(settings, specs, status_board(s), now)
        lean = rows(settings, specs, status_board(s, latest_only=True, nightly_prefix=NIGHTLY_PREFIX), now)
    for r in full + lean:  # packages without images have an empty series either way
        r.pop("series", None)
    assert lean == full
    ev = next(r for r in lean if r["package"] == "evtselect")
    assert ev["latest"]["runtime"]["image"] == ids[2] and ev["latest"]["runtime"]["verification"]["verdict"] == "passed"
    assert ev["latest"]["debug"]["image"] == ids[4] and ev["latest"]["full"]["image"] == ids[1]
    assert ev["nightly"]["image"] == ids[3] and ev["nightly"]["state"] == "failed"
    assert ev["promoted_tags"] == ["stable-runtime"]
    assert ev["channels"]["batch"]["image"] == ids[2] and ev["channels"]["batch"]["digest"] == digest
