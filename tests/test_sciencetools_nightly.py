"""The ScienceTools nightly for real: build, science verification of the gtselect -> gtmktime -> gtbin chain
in each image against the host build of the trusted release, tag, record, move the aliases; a broken
selection caught; a new pin rebuilt and re-verified; the Jenkins job run locally; promotion.

The nightly builds `master` of this session's umbrella mirror. One module fixture plays the story once, in
order, moving `master` the way new upstream pins arrive (to the broken-selection pin, then to the
leaf-change pin); each test checks one part of what happened, in any order."""
from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid

import git
import pytest

from test_workflows_helpers import make_ctx, wf_db, wf_settings  # noqa: F401

from release_manager import fermitools
from release_manager.jenkins.model import build_jobs
from release_manager.jenkins.runner import run_local
from release_manager.registry import Registry
from release_manager.workflows.common import image_rows
from release_manager.workflows.nightly import NightlyFailed, run_nightly
from release_manager.workflows.promote import promote

pytestmark = pytest.mark.engine
DAY1, DAY2, DAY3, DAY4 = (dt.date(2026, 11, d) for d in (10, 11, 12, 13))
PATH = "fermi-lat/sciencetools"


@pytest.fixture(scope="module")
def st_wf(st_settings, wf_settings):
    """The ScienceTools settings with this module's own database."""
    return st_settings.model_copy(update={"db_url": wf_settings.database_url})




def _move_master(settings, branch):
    repo = git.Repo(fermitools.mirror_root(settings.data_dir) / "ScienceTools.git")
    repo.git.update_ref("refs/heads/master", repo.commit(branch).hexsha)


def _report_checks(item):
    """The verification's summary.json (the nightly's report)."""
    return json.loads(open(item["verify_report"]).read())


@pytest.fixture(scope="module")
def story(st_wf, specs, api, wf_db, tmp_path_factory):
    """Every step of the ScienceTools nightly's life, run once: {step: what it gave}."""
    import threading
    from http.server import HTTPServer
    from test_workflows_helpers import _Hook
    received = []
    hook = HTTPServer(("127.0.0.1", 0), type("Hook", (_Hook,), {"received": received}))
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    settings = st_wf.model_copy(update={"webhook_url": f"http://127.0.0.1:{hook.server_port}/hooks/TOKEN-1"})
    reg = Registry(settings.registry)
    out = {"received": received}

    def ctx():
        lines = []
        c = make_ctx(settings, specs, api, wf_db, lines)
        c.lines = lines
        return c

    def aliases():
        return {v: reg.manifest_digest(PATH, f"nightly-{v}") for v in ("runtime", "debug", "full")}
    try:
        _move_master(settings, fermitools.FIXTURE_TAG)
        t0 = time.monotonic()
        out["first"] = run_nightly(ctx(), "sciencetools", DAY1)
        out["first_seconds"] = time.monotonic() - t0
        out["aliases_first"] = aliases()
        out["dated_first"] = {v: reg.manifest_digest(PATH, f"nightly-20261110-{v}") for v in out["aliases_first"]}
        t0 = time.monotonic()
        out["skip"] = run_nightly(ctx(), "sciencetools", DAY2)
        out["skip_seconds"] = time.monotonic() - t0
        _move_master(settings, "broken-selection")
        with pytest.raises(NightlyFailed) as e:
            run_nightly(ctx(), "sciencetools", DAY3)
        out["broken"] = e.value.report
        out["aliases_broken"] = aliases()
        out["dated_broken"] = reg.manifest_digest(PATH, "nightly-20261112-runtime")
        _move_master(settings, "leaf-change")
        leaf_ctx = ctx()
        out["leaf"] = run_nightly(leaf_ctx, "sciencetools", DAY4)
        out["leaf_lines"] = leaf_ctx.lines
        out["aliases_leaf"] = aliases()
        # the Jenkins job, run the way an agent runs it
        env = dict(os.environ, RELMAN_DB_URL=settings.database_url, RELMAN_DATA_DIR=str(settings.data_dir),
                   RELMAN_GIT_MIRRORS=fermitools.mirror_setting(settings.data_dir),
                   RELMAN_PLATFORM_OVERRIDES="rhel7=debian12-local", RELMAN_ACTOR="jenkins")
        for k in ("RELMAN_SUMMARY_DIR", "JENKINS_URL", "WORKSPACE", "RELMAN_WEBHOOK_URL"):
            env.pop(k, None)
        lines = []
        out["jenkins"] = run_local(build_jobs(specs, settings).get("sciencetools/nightly"), {},
                                   tmp_path_factory.mktemp("ws"), echo=lines.append, base_env=env)
        out["jenkins_lines"] = lines
        promote_ctx = ctx()
        # promoted tags are immutable: a name of this run's own (the registry outlives a test session)
        out["promoted_tag"] = promoted = f"st-leaf-{uuid.uuid4().hex[:8]}"
        out["promoted"] = promote(promote_ctx, "sciencetools", "nightly-20261113-runtime", to=promoted,
                                  by="alice", reason="ScienceTools nightly verified against the release")
        out["promoted_digest"] = reg.manifest_digest(PATH, promoted)
        from release_manager.workflows.promote import PromotionRefused
        with pytest.raises(PromotionRefused) as refused:
            promote(ctx(), "sciencetools", "nightly-20261112-runtime", to="broken", by="alice",
                    reason="a failed verification cannot be promoted")
        out["refused"] = str(refused.value)
        out["rows"] = image_rows(ctx(), "sciencetools")
        yield out
    finally:
        hook.shutdown()
        hook.server_close()


def test_first_nightly_builds_verifies_and_moves_aliases(story, st_wf):
    rep = story["first"]
    assert rep["status"] == "passed", rep
    assert [i["variant"] for i in rep["images"]] == ["runtime", "debug", "full"]
    for item in rep["images"]:
        assert item["verdict"] == "passed", item
        assert story["dated_first"][item["variant"]] == item["digest"]
        assert story["aliases_first"][item["variant"]] == item["digest"]
    # the reference is the host build of the trusted release, made by the nightly itself
    stamp = json.loads((st_wf.data_dir / "host-build" / "sciencetools" / ".relman-host-build.json").read_text())
    assert stamp["commit"] == git.Repo(fermitools.mirror_root(st_wf.data_dir) / "ScienceTools.git").commit(
        fermitools.FIXTURE_TAG).hexsha
    # every product of the chain compared, exactly; the image ran through its entrypoint
    report = _report_checks(rep["images"][0])
    files = {c["file"] for c in report["rows"] if c["file"].endswith(".fits")}
    assert files == {"crab-select.fits", "crab-mktime.fits", "crab-cmap.fits", "crab-ccube.fits", "crab-lc.fits"}
    assert all(c["result"] in ("pass", "warning") for c in report["rows"]), \
        [c for c in report["rows"] if c["result"] not in ("pass", "warning")]


def test_unchanged_umbrella_is_skipped(story):
    rep = story["skip"]
    assert rep["status"] == "skipped" and rep["last_nightly"] == "20261110", rep


def test_broken_selection_fails_verification_and_keeps_the_aliases(story):
    rep = story["broken"]
    assert rep["status"] == "failed"
    runtime = next(i for i in rep["images"] if i["variant"] == "runtime")
    assert runtime["verdict"] == "failed" and "alias" not in runtime
    failed = [c for c in _report_checks(runtime)["rows"] if c["result"] == "fail"]
    # the report names the product and what differs in it: the selected events
    assert any(c["file"] == "crab-select.fits" and c.get("hdu") == "EVENTS" for c in failed), failed
    assert any(c["file"] == "crab-cmap.fits" for c in failed), failed
    assert story["aliases_broken"] == story["aliases_first"], "the aliases stayed on the good images"
    assert story["dated_broken"] == runtime["digest"], "the dated tag is kept for study"
    assert any("sciencetools" in json.dumps(r["body"]) and "failed" in json.dumps(r["body"])
               for r in story["received"])
    rows = [r for r in story["rows"] if r["digest"] == runtime["digest"]]
    assert rows and rows[0]["verdict"] == "failed"


def test_new_pin_rebuilds_and_reverifies(story):
    rep = story["leaf"]
    assert rep["status"] == "passed", rep
    # new build keys: built (or found built by an earlier run on this engine), verified again
    assert all(i["build"] in ("built", "skipped") and i["verdict"] == "passed" for i in rep["images"])
    assert {i["build_key"] for i in rep["images"]}.isdisjoint({i["build_key"] for i in story["first"]["images"]})
    for i in rep["images"]:
        assert story["aliases_leaf"][i["variant"]] == i["digest"] != story["aliases_first"][i["variant"]]
    if any(i["build"] == "built" for i in rep["images"]):
        assert "Using cache" in "\n".join(story["leaf_lines"])


def test_jenkins_nightly_job_runs_the_same_locally(story, st_wf):
    assert "[Nightly] relman nightly sciencetools" in "\n".join(story["jenkins_lines"])
    assert [rc for _, rc in story["jenkins"].stages] == [0] * len(story["jenkins"].stages)
    # today's nightly of the same pins as DAY4: nothing to build; the job recorded the skip
    from release_manager.db.connection import connect
    from release_manager.db.queries import audit
    with connect(st_wf.database_url).read() as s:
        skips = [e for e in audit(s, "sciencetools") if e["action"] == "nightly-skip"]
    assert skips and skips[-1]["detail"]["last"] == "20261113", skips[-1:]


def test_promote_the_verified_nightly_only(story):
    assert story["promoted"]["status"] == "promoted", story["promoted"]
    leaf_runtime = next(i for i in story["leaf"]["images"] if i["variant"] == "runtime")
    assert story["promoted_digest"] == leaf_runtime["digest"]
    assert "not verified" in story["refused"]
