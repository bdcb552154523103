"""End to end on the real engine: evtselect v1.1.0 in its runtime image against the bare-metal host
build (pass), then an image built from a later commit with a different cut (fail, readable report)."""
from __future__ import annotations

import json
import shutil

import git
import pytest
from click.testing import CliRunner

from release_manager.cli import main
from release_manager.config import load_settings
from release_manager.demo import host_build
from release_manager.verify.rules import VerifyUsageError
from release_manager.verify.runner import verify_package

WHEN = "2026-04-01T10:00:00+00:00"


@pytest.fixture(scope="module")
def host_reference(settings, demo_repo):
    prefix = settings.data_dir / "host-build" / "evtselect"
    if not (prefix / "bin" / "evtselect").exists():
        host_build(demo_repo, "v1.1.0", prefix, echo=lambda m: None)
    return prefix


def _image(result):
    return f"{result.repository}:{result.tags[0]}"


def test_runtime_image_matches_host_build(settings, demo_build, host_reference, tmp_path):
    report = tmp_path / "report"
    r = CliRunner().invoke(main, ["verify", "evtselect", "--image", _image(demo_build["runtime"]),
                                  "--report", str(report)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "verdict: PASS" in r.output
    summary = json.loads((report / "summary.json").read_text())
    assert summary["verdict"] == "pass"
    sides = {s["side"]: s for s in summary["steps"]}
    assert sides["image"]["exit_code"] == 0 and sides["image"]["wall_seconds"] > 0
    assert sides["image"]["peak_memory_bytes"] and sides["reference"]["peak_memory_bytes"]
    assert (report / "outputs" / "image" / "selected.fits").stat().st_uid == 1000    # written by user sas
    # evtselect's CHECKSUM comment carries the second it was written: runs in the same second give
    # byte-identical files (the shortcut), otherwise the columns are compared one by one
    whole_file = [c for c in summary["checks"] if c["test"] == "bytes" and not c["hdu"] and c["result"] == "pass"]
    assert whole_file or {c["column"] for c in summary["checks"] if c["hdu"] == "EVENTS"} >= {"ENERGY", "RUN_ID"}
    assert (report / "junit.xml").exists() and (report / "report.html").exists()


def test_missing_host_reference_is_a_usage_error(specs, tmp_path):
    other = load_settings(data_dir=tmp_path / "empty")
    with pytest.raises(VerifyUsageError, match="reference host build missing"):
        verify_package(other, specs, "evtselect", "v1.1.0-runtime", tmp_path / "w", echo=lambda m: None)


def test_image_with_a_different_cut_fails(settings, specs, demo_repo, demo_build, host_reference, api, tmp_path):
    from release_manager.build import Builder
    alt = load_settings(data_dir=tmp_path / "alt")
    path = alt.data_dir / "repos" / "evtselect"
    repo = git.Repo.clone_from(demo_repo, path, branch="main")
    src = path / "src" / "selection.cxx"
    text = src.read_text()
    assert "return value >= lo && value <= hi;" in text
    src.write_text(text.replace("return value >= lo && value <= hi;", "return value >= lo && value < 0.9 * hi;"))
    repo.git.add("-A")
    with repo.git.custom_environment(GIT_AUTHOR_DATE=WHEN, GIT_COMMITTER_DATE=WHEN, GIT_AUTHOR_NAME="relman test",
                                     GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="relman test",
                                     GIT_COMMITTER_EMAIL="t@example.org"):
        repo.git.commit("-q", "-m", "tighter upper cuts")
    results = Builder(alt, specs, echo=lambda m: None, api=api).build("evtselect", "main", ["runtime"],
                                                                      tag_prefix="verify-cut-test")
    image = _image(results[0])
    try:
        report = tmp_path / "report"
        out = verify_package(settings, specs, "evtselect", image, report, api=api, echo=lambda m: None)
        from release_manager.verify.report import write_reports
        paths = write_reports(out, report)
        assert out.verdict == "fail" and out.exit_code == 1
        bad = [c for c in out.checks if c.result == "fail"]
        rows = [c for c in bad if c.test == "rows" and c.hdu == "EVENTS"]
        assert rows and "row count differs" in rows[0].message
        html = paths["html"].read_text()
        assert "FAIL" in html and "row count differs" in html and "data:image/png;base64," in html
    finally:
        for t in results[0].tags:
            try:
                api.remove_image(f"{results[0].repository}:{t}", noprune=True)
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(tmp_path / "alt", ignore_errors=True)
