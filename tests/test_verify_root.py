"""The ROOT comparator on the real merit files, and the data-monitoring histogram chi2."""
from __future__ import annotations

import numpy as np
import pytest
import uproot

from release_manager.spec.model import CompareRule
from release_manager.verify.compare import compare_paths
from release_manager.verify.distributions import hist_chi2
from release_manager.verify.root_cmp import compare_root
from release_manager.verify.rules import VerifyUsageError, default_rules

from conftest import FERMI

MERIT = FERMI / "merit"
RULE = CompareRule(pattern="*.root", comparator="root", key_columns=["EvtRun", "EvtEventId"],
                   floats={"rtol": 1e-6, "atol": 0.0})


def test_merit_against_itself_passes_parsed_and_shortcut():
    f = MERIT / "default-merit.root"
    checks = compare_root(f, f, f.name, RULE, [RULE])
    assert checks and all(c.result == "pass" for c in checks)
    assert sum(1 for c in checks if c.hdu == "MeritTuple" and c.column) > 1200
    assert compare_paths(f, f, default_rules()).checks[0].test == "bytes"


def test_default_vs_gamma_fails_on_energy_branches():
    o = compare_paths(MERIT / "default-merit.root", MERIT / "gamma_5_gev_normal-merit.root", default_rules())
    assert o.verdict == "fail"
    bad = {c.column for c in o.checks if c.result == "fail" and c.hdu == "MeritTuple"}
    assert {"FT1Energy", "CalEnergyRaw", "EvtEnergyCorr"} <= bad


def test_rule_naming_missing_branch_and_unreadable_root(tmp_path):
    f = MERIT / "default-merit.root"
    rule = CompareRule(pattern="*.root", comparator="root", columns={"NoSuchBranch": {"test": "ks"}})
    with pytest.raises(VerifyUsageError, match="NoSuchBranch"):
        compare_paths(f, f, [rule])
    bad = tmp_path / "default-merit.root"
    bad.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(VerifyUsageError, match="cannot read the candidate ROOT file"):
        compare_paths(f, bad, default_rules())


def _hists(path, **hists):
    with uproot.recreate(path) as f:
        for name, (counts, edges) in hists.items():
            f[name] = (np.asarray(counts, dtype=np.float64), edges)


def test_histograms_chi2_like_data_monitoring(tmp_path):
    rng = np.random.default_rng(7)
    edges = np.linspace(0, 10, 41)
    ref_counts, _ = np.histogram(rng.normal(5, 2, 20000), edges)
    same, _ = np.histogram(rng.normal(5, 2, 5000), edges)          # other statistics, same shape
    shifted, _ = np.histogram(rng.normal(5.5, 2, 5000), edges)
    few = np.zeros(40)
    few[20] = 3
    _hists(tmp_path / "ref.root", h=(ref_counts, edges), sparse=(few, edges))
    _hists(tmp_path / "same.root", h=(same, edges), sparse=(few * 2, edges))
    _hists(tmp_path / "shift.root", h=(shifted, edges), sparse=(few, edges))
    rule = CompareRule(pattern="*.root", comparator="root", min_entries=20)
    checks = compare_root(tmp_path / "ref.root", tmp_path / "same.root", "x.root", rule, [rule])
    h = {c.hdu: c for c in checks if c.test == "hist-chi2"}
    assert h["h"].result == "pass" and h["h"].pvalue > 0.01
    assert h["sparse"].result == "pass" and "minimum entries" in h["sparse"].message
    checks = compare_root(tmp_path / "ref.root", tmp_path / "shift.root", "x.root", rule, [rule])
    bad = [c for c in checks if c.result == "fail"]
    assert [c.hdu for c in bad] == ["h"] and "worst bin" in bad[0].message


def test_hist_chi2_numbers():
    # reference scaled to the test's entries; per-bin variance = test + scale^2 * ref
    h = hist_chi2([100, 100], [60, 40], min_entries=1)
    scale = 0.5
    expect = (60 - 50) ** 2 / (60 + scale ** 2 * 100) + (40 - 50) ** 2 / (40 + scale ** 2 * 100)
    assert h["chi2"] == pytest.approx(expect) and h["ndf"] == 1 and h["worst_bin"] == 1
    assert hist_chi2([5, 5], [5, 5], min_entries=20)["skipped"]


def test_th2_chi2_and_binning(tmp_path):
    rng = np.random.default_rng(1)
    rng_xy = [[-4, 4], [-4, 4]]
    for name, shift in (("a", 0.0), ("b", 0.0), ("c", 0.3)):
        with uproot.recreate(tmp_path / f"{name}.root") as f:
            f["h2"] = np.histogram2d(rng.normal(shift, 1, 5000), rng.normal(0, 1, 5000), bins=(10, 12), range=rng_xy)
    with uproot.recreate(tmp_path / "d.root") as f:
        f["h2"] = np.histogram2d(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000), bins=(10, 12))
    rule = CompareRule(pattern="*", comparator="root", columns={"h2": {"test": "chi2", "fail_below": 0.001}})
    res = {n: [c for c in compare_root(tmp_path / "a.root", tmp_path / f"{n}.root", "x", rule, [rule])
               if c.test == "hist-chi2"][0] for n in "bcd"}
    assert res["b"].result == "pass" and res["c"].result == "fail"
    assert res["d"].result == "fail" and "binning of axis 0 differs" in res["d"].message
