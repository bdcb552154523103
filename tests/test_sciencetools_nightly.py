"""The ScienceTools nightly for real: build, science verification of the gtselect -> gtmktime -> gtbin chain
in each image against the host build of the trusted release, tag, record, move the aliases; a broken
selection caught; a new pin rebuilt and re-verified; the Jenkins job run locally; promotion.

The nightly builds `master` of this session's umbrella mirror; the tests move `master` the way new
upstream pins arrive (to the broken-selection pin, then to the leaf-change pin) and run in file order."""
from __future__ import annotations

import datetime as dt
import json
import os
import time

import git
import pytest

from test_workflows_helpers import make_ctx, webhook, wf_db, wf_settings  # noqa: F401

from release_manager import fermitools, tags
from release_manager.jenkins.model import build_jobs
from release_manager.jenkins.runner import run_local
from release_manager.registry import Registry
from release_manager.workflows.common import image_rows
from release_manager.workflows.nightly import NightlyFailed, run_nightly
from release_manager.workflows.promote import promote

pytestmark = pytest.mark.engine
DAY1, DAY2, DAY3, DAY4 = (dt.date(2026, 11, d) for d in (10, 11, 12, 13))
PATH = "fermi-lat/sciencetools"
STATE = {}


@pytest.fixture(scope="module")
def st_wf(st_settings, wf_settings):
    """The ScienceTools settings with this module's own database."""
    return st_settings.model_copy(update={"db_url": wf_settings.database_url})


@pytest.fixture
def ctx(st_wf, specs, api, wf_db):
    lines = []
    c = make_ctx(st_wf, specs, api, wf_db, lines)
    c.lines = lines
    return c


def _move_master(settings, branch):
    repo = git.Repo(fermitools.mirror_root(settings.data_dir) / "ScienceTools.git")
    repo.git.update_ref("refs/heads/master", repo.commit(branch).hexsha)


def _report_checks(item):
    """The verification's summary.json (the nightly's report)."""
    return json.loads(open(item["verify_report"]).read())


def test_first_nightly_builds_verifies_and_moves_aliases(ctx, st_wf):
    _move_master(st_wf, fermitools.FIXTURE_TAG)
    t0 = time.monotonic()
    rep = run_nightly(ctx, "sciencetools", DAY1)
    STATE["first"] = time.monotonic() - t0
    assert rep["status"] == "passed", rep
    assert [i["variant"] for i in rep["images"]] == ["runtime", "debug", "full"]
    reg = Registry(st_wf.registry)
    for item in rep["images"]:
        assert item["verdict"] == "passed", item
        assert reg.manifest_digest(PATH, f"nightly-20261110-{item['variant']}") == item["digest"]
        assert reg.manifest_digest(PATH, f"nightly-{item['variant']}") == item["digest"]
    # the reference is the host build of the trusted release, made by the nightly itself
    stamp = json.loads((st_wf.data_dir / "host-build" / "sciencetools" / ".relman-host-build.json").read_text())
    assert stamp["commit"] == git.Repo(fermitools.mirror_root(st_wf.data_dir) / "ScienceTools.git").commit(
        fermitools.FIXTURE_TAG).hexsha
    # every product of the chain compared, exactly; the image ran through its entrypoint
    runtime = rep["images"][0]
    report = _report_checks(runtime)
    files = {c["file"] for c in report["rows"] if c["file"].endswith(".fits")}
    assert files == {"crab-select.fits", "crab-mktime.fits", "crab-cmap.fits", "crab-ccube.fits", "crab-lc.fits"}
    assert all(c["result"] in ("pass", "warning") for c in report["rows"]), \
        [c for c in report["rows"] if c["result"] not in ("pass", "warning")]
    STATE["day1"] = {i["variant"]: i["digest"] for i in rep["images"]}


def test_unchanged_umbrella_is_skipped(ctx):
    t0 = time.monotonic()
    rep = run_nightly(ctx, "sciencetools", DAY2)
    STATE["skip"] = time.monotonic() - t0
    assert rep["status"] == "skipped" and rep["last_nightly"] == "20261110", rep


def test_broken_selection_fails_verification_and_keeps_the_aliases(ctx, st_wf, webhook):  # noqa: F811
    url, received = webhook
    ctx.settings = st_wf.model_copy(update={"webhook_url": url})
    _move_master(st_wf, "broken-selection")
    with pytest.raises(NightlyFailed) as e:
        run_nightly(ctx, "sciencetools", DAY3)
    rep = e.value.report
    assert rep["status"] == "failed"
    runtime = next(i for i in rep["images"] if i["variant"] == "runtime")
    assert runtime["verdict"] == "failed" and "alias" not in runtime
    failed = [c for c in _report_checks(runtime)["rows"] if c["result"] == "fail"]
    # the report names the product and what differs in it: the selected events
    assert any(c["file"] == "crab-select.fits" and c.get("hdu") == "EVENTS" for c in failed), failed
    assert any(c["file"] == "crab-cmap.fits" for c in failed), failed
    reg = Registry(st_wf.registry)
    for v, digest in STATE["day1"].items():
        assert reg.manifest_digest(PATH, f"nightly-{v}") == digest, "the alias stayed on the good image"
    assert reg.manifest_digest(PATH, "nightly-20261112-runtime") == runtime["digest"], "dated tag kept for study"
    assert received and "sciencetools" in json.dumps(received[-1]["body"])
    rows = [r for r in image_rows(ctx, "sciencetools") if r["digest"] == runtime["digest"]]
    assert rows and rows[0]["verdict"] == "failed"


def test_new_pin_rebuilds_and_reverifies(ctx, st_wf):
    _move_master(st_wf, "leaf-change")
    t0 = time.monotonic()
    rep = run_nightly(ctx, "sciencetools", DAY4)
    STATE["leaf"] = time.monotonic() - t0
    assert rep["status"] == "passed", rep
    assert all(i["build"] == "built" and i["verdict"] == "passed" for i in rep["images"])
    reg = Registry(st_wf.registry)
    for i in rep["images"]:
        assert reg.manifest_digest(PATH, f"nightly-{i['variant']}") == i["digest"] != STATE["day1"][i["variant"]]
    lines = "\n".join(ctx.lines)
    assert "Using cache" in lines
    STATE["day4"] = {i["variant"]: i["digest"] for i in rep["images"]}


def test_jenkins_nightly_job_runs_the_same_locally(st_wf, specs, tmp_path):
    env = dict(os.environ, RELMAN_DB_URL=st_wf.database_url, RELMAN_DATA_DIR=str(st_wf.data_dir),
               RELMAN_GIT_MIRRORS=fermitools.mirror_setting(st_wf.data_dir),
               RELMAN_PLATFORM_OVERRIDES="rhel7=debian12-local", RELMAN_ACTOR="jenkins")
    for k in ("RELMAN_SUMMARY_DIR", "JENKINS_URL", "WORKSPACE"):
        env.pop(k, None)
    job = build_jobs(specs, st_wf).get("sciencetools/nightly")
    lines = []
    result = run_local(job, {}, tmp_path / "ws", echo=lines.append, base_env=env)
    assert "[Nightly] relman nightly sciencetools" in "\n".join(lines)
    assert [rc for _, rc in result.stages] == [0] * len(result.stages)
    # today's nightly of the same pins as DAY4: nothing to build; the job recorded the skip
    from release_manager.db.connection import connect
    from release_manager.db.queries import audit
    with connect(st_wf.database_url).read() as s:
        skips = [e for e in audit(s, "sciencetools") if e["action"] == "nightly-skip"]
    assert skips and skips[-1]["detail"]["last"] == "20261113", skips[-1:]


def test_promote_the_verified_nightly(ctx):
    rep = promote(ctx, "sciencetools", "nightly-20261113-runtime", to="v2.4.0-subset1-leaf", by="alice",
                  reason="ScienceTools nightly verified against the release")
    assert rep["status"] == "promoted", rep
    reg = Registry(ctx.settings.registry)
    assert reg.manifest_digest(PATH, "v2.4.0-subset1-leaf") == STATE["day4"]["runtime"]
    from release_manager.workflows.promote import PromotionRefused
    with pytest.raises(PromotionRefused, match="not verified"):
        promote(ctx, "sciencetools", "nightly-20261112-runtime", to="broken", by="alice",
                reason="a failed verification cannot be promoted")
