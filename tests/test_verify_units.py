"""Small units of verification: text masking, statistics grading, rules, host argv mapping."""
from __future__ import annotations

import numpy as np
import pytest

from release_manager.spec.model import CompareRule
from release_manager.verify.columns import ColumnCompare
from release_manager.verify.distributions import ks_check
from release_manager.verify.rules import VerifyUsageError, column_rule, load_rules_file, rule_for
from release_manager.verify.runner import map_argv
from release_manager.verify.tables import match_keys, pack_keys
from release_manager.verify.text_cmp import compare_text


def test_text_masks_timestamps_paths_hosts(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("start 2026-03-02T10:00:00Z on build1.slac.stanford.edu\nread /data/x/ft1.fits in 1.5 s\n"
                 "run id 1234 done\n")
    b.write_text("start 2026-04-11 08:12:13 on ci-7.example.org\nread /inputs/ft1 in 0.25 s\nrun id 1234 done\n")
    rule = CompareRule(pattern="*.log", comparator="text")
    assert compare_text(a, b, "x.log", rule)[0].result == "pass"
    b.write_text(b.read_text().replace("1234", "1235"))
    c = compare_text(a, b, "x.log", rule)[0]
    assert c.result == "fail" and "1235" in c.message
    rule = CompareRule(pattern="*.log", comparator="text", mask_patterns=[r"run id \d+"])
    assert compare_text(a, b, "x.log", rule)[0].result == "pass"


def test_ks_grades():
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    assert ks_check("f", "h", "c", x, rng.normal(size=5000), 0.05, 0.01).result == "pass"
    bad = ks_check("f", "h", "c", x, rng.normal(0.3, 1, 5000), 0.05, 0.01)
    assert bad.result == "fail" and bad.pvalue < 0.01 and bad.statistic > 0.05


def test_column_compare_tolerance_and_nan():
    cc = ColumnCompare("f", "h", "x", "tolerance", rtol=1e-5)
    ref = np.array([1.0, 2.0, np.nan, 0.0], dtype=">f4")
    cc.feed(ref, np.array([1.000001, 2.0, np.nan, 0.0], dtype=">f4"), 0)
    assert cc.check().result == "pass"
    cc.feed(ref, np.array([1.0, 2.1, 3.0, 0.0], dtype=">f4"), 4)
    c = cc.check()
    assert c.result == "fail" and c.details["differing_rows"] == 2 and c.details["nan_mismatches"] == 1
    assert "row 5" in c.message and "row 6" in c.message


def test_key_matching_with_duplicates_and_missing():
    run = np.array([1, 1, 2, 2, 3], dtype=">i4")
    ev = np.array([5, 5, 1, 2, 9], dtype=">i4")
    kr = pack_keys([run, ev])
    kc = pack_keys([run[[3, 0, 2, 1]], ev[[3, 0, 2, 1]]])
    pr, pc, only_r, only_c = match_keys(kr, kc)
    assert list(pr) == [0, 1, 2, 3] and len(only_r) == 1 and len(only_c) == 0
    assert all(kr[pr] == kc[pc])
    # keys wider than 8 bytes fall back to raw bytes
    wide = pack_keys([run.astype(">i8"), ev.astype(">i8")])
    assert wide.dtype.kind == "S" and len(set(wide.tolist())) == 4


def test_rules(tmp_path):
    r1 = CompareRule(pattern="*.fits", comparator="fits",
                     columns={"ENERGY": {"test": "ks"}, "DIFRSP*": {"test": "ignore"}})
    assert rule_for("sub/x.fits", [r1]) is r1
    with pytest.raises(VerifyUsageError, match="not covered"):
        rule_for("x.root", [r1])
    assert column_rule(r1, "ENERGY").test == "ks" and column_rule(r1, "DIFRSP3").test == "ignore"
    assert column_rule(r1, "RA") is None
    p = tmp_path / "r.yaml"
    p.write_text("- {pattern: '*.fits', comparator: fits, floats: {rtol: 1.0e-5}}\n")
    assert load_rules_file(p)[0].floats.rtol == 1e-5
    p.write_text("- {pattern: '*.fits', comparator: fits, colums: {}}\n")
    with pytest.raises(VerifyUsageError, match="rule 1.*colums"):
        load_rules_file(p)


def test_map_argv(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "evtselect").write_text("")
    argv = map_argv(["evtselect", "infile=/inputs/ft1", "outfile=/outputs/sel.fits", "x=/inputs/ft10"],
                    {"ft1": tmp_path / "in.fits", "ft10": tmp_path / "other"}, tmp_path / "out", tmp_path / "bin")
    assert argv == [str(tmp_path / "bin" / "evtselect"), f"infile={tmp_path}/in.fits",
                    f"outfile={tmp_path}/out/sel.fits", f"x={tmp_path}/other"]
    with pytest.raises(VerifyUsageError, match="does not exist"):
        map_argv(["nosuch"], {}, tmp_path, tmp_path / "bin")


def test_image_hdus_compared_as_arrays(tmp_path):
    from astropy.io import fits
    from release_manager.verify.compare import compare_paths
    img = np.random.default_rng(4).random((300, 200)).astype(np.float32)
    fits.PrimaryHDU(img).writeto(tmp_path / "a.fits")
    fits.HDUList([fits.PrimaryHDU(img * np.float32(1 + 1e-7))]).writeto(tmp_path / "b.fits")
    bad = img.copy()
    bad[150, 7] += 1
    fits.PrimaryHDU(bad).writeto(tmp_path / "c.fits")
    rule = [CompareRule(pattern="*.fits", comparator="fits", floats={"rtol": 1e-5})]
    assert compare_paths(tmp_path / "a.fits", tmp_path / "b.fits", rule).verdict == "pass"
    o = compare_paths(tmp_path / "a.fits", tmp_path / "c.fits", rule)
    bad_checks = [c for c in o.checks if c.result == "fail"]
    assert [(c.hdu, c.test) for c in bad_checks] == [("PRIMARY", "image")] and "row 150" in bad_checks[0].message


def test_folders_with_logs_and_missing_outputs(tmp_path):
    from release_manager.verify.compare import compare_paths
    from release_manager.verify.rules import default_rules
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "run.log").write_text("started 2026-01-01T00:00:00Z in /home/x\nselected 10 events\n")
    (b / "run.log").write_text("started 2026-02-02T11:11:11Z in /outputs\nselected 10 events\n")
    (a / "only-ref.txt").write_text("x\n")
    o = compare_paths(a, b, default_rules())
    assert {(c.file, c.result) for c in o.checks} == {("run.log", "pass"), ("only-ref.txt", "fail")}


def test_stored_reference_missing_is_a_usage_error(tmp_path):
    from release_manager.config import load_settings
    from release_manager.spec.model import Reference
    from release_manager.verify.runner import _reference
    s = load_settings(data_dir=tmp_path)
    with pytest.raises(VerifyUsageError, match="stored reference.*missing"):
        _reference(Reference(kind="stored", path="{data_dir}/refs/evtselect"), s)
    (tmp_path / "refs" / "evtselect").mkdir(parents=True)
    (tmp_path / "refs" / "evtselect" / "selected.fits").write_bytes(b"x")
    assert _reference(Reference(kind="stored", path="{data_dir}/refs/evtselect"), s)[0].endswith("refs/evtselect")


def test_placeholders_in_the_verification_section_are_a_usage_error(specs, settings, tmp_path):
    from release_manager.verify.runner import verify_package
    with pytest.raises(VerifyUsageError, match="placeholder"):
        verify_package(settings, specs, "glastrelease", "x", tmp_path, echo=lambda m: None)
    with pytest.raises(VerifyUsageError, match="no spec for package"):
        verify_package(settings, specs, "nosuch", "x", tmp_path, echo=lambda m: None)
