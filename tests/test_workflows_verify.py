"""How a workflow verifies: the verification module's API, else `relman verify` in a subprocess."""
from __future__ import annotations

import sys

from test_workflows_helpers import host_reference, make_ctx, wf_db, wf_settings  # noqa: F401 - fixtures

from release_manager.workflows import verification


def test_api_and_subprocess_agree(wf_settings, specs, api, wf_db, demo_build, host_reference, tmp_path, monkeypatch):
    ctx = make_ctx(wf_settings, specs, api, wf_db)
    r = demo_build["runtime"]
    image = verification.ensure_local(ctx, r.repository, r.digest)
    by_api = verification.verify_image(ctx, "evtselect", image, tmp_path / "api")
    assert by_api.how == "api" and by_api.verdict == "passed" and by_api.checks
    monkeypatch.setitem(sys.modules, "release_manager.verify.runner", None)     # the module is not there
    by_cmd = verification.verify_image(ctx, "evtselect", image, tmp_path / "cmd")
    assert by_cmd.how == "subprocess" and by_cmd.verdict == "passed"
    assert by_cmd.workload == by_api.workload == "select"
    assert (tmp_path / "cmd" / "summary.json").is_file()


def test_package_without_verification_is_not_run(wf_settings, specs, api, wf_db):
    ctx = make_ctx(wf_settings, specs, api, wf_db)
    assert specs.packages["fastcopy"].spec.verification is None
    v = verification.verify_image(ctx, "fastcopy", "unused", wf_settings.data_dir / "unused")
    assert v.verdict == "not-run" and not v.recordable
