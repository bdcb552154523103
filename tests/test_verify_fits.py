"""The FITS comparator's own verdicts, on the real 3FHL events and perturbed copies of them."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from release_manager.cli import main
from release_manager.spec.model import CompareRule, KnownDifference
from release_manager.verify import fits_cmp, tables
from release_manager.verify.compare import compare_paths
from release_manager.verify.report import write_reports
from release_manager.verify.rules import VerifyUsageError, default_rules

from conftest import FT1_3FHL

KEYED = [CompareRule(pattern="*.fits", comparator="fits", key_columns=["RUN_ID", "EVENT_ID"],
                     floats={"rtol": 1e-6, "atol": 0.0})]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The real 3FHL events decompressed, and the perturbed copies several tests compare with: all made
    here, so that every test stands alone, whatever order the tests run in."""
    d = tmp_path_factory.mktemp("fits")
    with fits.open(FT1_3FHL) as h:
        h.writeto(d / "ref.fits")
    perturb(d, "shuffled.fits", shuffle)
    perturb(d, "energy.fits", scale_energy)
    return d


def perturb(work, name, fn):
    out = work / name
    with fits.open(work / "ref.fits") as h:
        fn(h)
        h.writeto(out, overwrite=True)
    return out


def shuffle(h):
    p = np.random.default_rng(1).permutation(len(h[1].data))
    h[1].data = h[1].data[p]


def scale_energy(h):
    h[1].data["ENERGY"] *= 1.02


def failing(outcome):
    return [c for c in outcome.checks if c.result == "fail"]


def run(ref, cand, rules=None, **kw):
    return compare_paths(ref, cand, rules or default_rules(), **kw)


def test_identical_and_gz_against_itself(work):
    o = run(work / "ref.fits", work / "ref.fits")
    assert o.verdict == "pass" and o.checks[0].test == "bytes"
    o = run(FT1_3FHL, FT1_3FHL)
    assert o.verdict == "pass"
    # the decompressed file against the gz: parsed, every data section byte-identical
    o = run(FT1_3FHL, work / "ref.fits", [CompareRule(pattern="*", comparator="fits")])
    assert o.verdict == "pass", failing(o)
    assert any(c.test == "bytes" and c.column == "ENERGY" for c in o.checks)


def test_shuffled_rows_pass_with_key_matching_only(work):
    cand = work / "shuffled.fits"
    o = run(work / "ref.fits", cand, KEYED)
    assert o.verdict == "pass", [c.message for c in failing(o)]
    assert any(c.test == "keys" and "order differs" in c.message for c in o.checks)
    assert run(work / "ref.fits", cand).verdict == "fail"


def test_ignored_keyword_passes_other_keyword_fails(work):
    def ignored(h):
        h[1].header["DATE"] = "2031-01-01T00:00:00"
        h[1].header["CREATOR"] = "someone else"
    assert run(work / "ref.fits", perturb(work, "date.fits", ignored), KEYED).verdict == "pass"

    def other(h):
        h[1].header["OBSERVER"] = "Somebody Else"
    o = run(work / "ref.fits", perturb(work, "observer.fits", other), KEYED)
    assert o.verdict == "fail"
    assert [c.test for c in failing(o)] == ["header"] and "OBSERVER" in failing(o)[0].message
    # a rule may ignore it
    rule = CompareRule(pattern="*.fits", comparator="fits", ignore_keywords=["OBSERVER", "DATE", "CHECKSUM", "DATASUM"])
    assert run(work / "ref.fits", work / "observer.fits", [rule]).verdict == "pass"


def test_energy_scaled_fails_naming_energy(work):
    o = run(work / "ref.fits", work / "energy.fits", KEYED)
    assert o.verdict == "fail"
    bad = failing(o)
    assert [(c.hdu, c.column) for c in bad] == [("EVENTS", "ENERGY")]
    assert "ENERGY" in bad[0].message and "rows differ" in bad[0].message
    # a tolerance wider than 2% passes
    wide = CompareRule(pattern="*.fits", comparator="fits", columns={"ENERGY": {"test": "tolerance", "rtol": 0.021}})
    assert run(work / "ref.fits", work / "energy.fits", [wide]).verdict == "pass"


def test_dropped_events_fail_naming_row_count(work):
    def drop(h):
        keep = np.random.default_rng(2).random(len(h[1].data)) >= 0.01
        h[1].data = h[1].data[keep]
    cand = perturb(work, "dropped.fits", drop)
    o = run(work / "ref.fits", cand)
    assert o.verdict == "fail"
    rows = [c for c in failing(o) if c.test == "rows"]
    assert rows and "row count differs: 32843" in rows[0].message
    o = run(work / "ref.fits", cand, KEYED)     # keyed: the unmatched rows are named, the rest compared
    assert {c.test for c in failing(o)} == {"rows", "keys"}
    assert any("without a match in the candidate" in c.message for c in failing(o))


def test_nan_injected_fails_and_nan_equals_nan(work):
    def nan(h):
        h[1].data["ENERGY"][5] = np.nan
    cand = perturb(work, "nan.fits", nan)
    o = run(work / "ref.fits", cand)
    bad = failing(o)
    assert o.verdict == "fail" and bad[0].column == "ENERGY"
    assert "NaN in the candidate only: 1 row(s)" in bad[0].message and "row 5" in bad[0].message
    assert run(cand, perturb(work, "nan2.fits", nan)).verdict == "pass"     # NaN vs NaN: equal


def test_column_removed_fails(work):
    def remove(h):
        cols = [c for c in h[1].columns if c.name != "ZENITH_ANGLE"]
        h[1] = fits.BinTableHDU.from_columns(cols, header=h[1].header)
    o = run(work / "ref.fits", perturb(work, "nocol.fits", remove))
    bad = failing(o)
    assert o.verdict == "fail"
    assert any(c.test == "columns" and "ZENITH_ANGLE" in c.message for c in bad)


def test_gti_compared(work):
    def gti(h):
        h["GTI"].data["STOP"][3] += 1000.0   # rtol 1e-6 of a MET (~2.4e8 s) is 240 s
    o = run(work / "ref.fits", perturb(work, "gti.fits", gti))
    assert [(c.hdu, c.column) for c in failing(o)] == [("GTI", "STOP")]


def test_bootstrap_resample_passes_under_ks_rule(work):
    def boot(h):
        idx = np.random.default_rng(3).integers(0, len(h[1].data), len(h[1].data))
        h[1].data = h[1].data[idx]
    cand = perturb(work, "boot.fits", boot)
    ks = {"*": {"test": "ks"}, "EVENT_CLASS": {"test": "ignore"}, "EVENT_TYPE": {"test": "ignore"},
          "ENERGY": {"test": "chi2", "bins": 40}}
    rule = CompareRule(pattern="*.fits", comparator="fits", columns=ks,
                       ignore_keywords=["DATE", "CREATOR", "DATASUM", "CHECKSUM"])
    events_only = [rule]
    o = run(work / "ref.fits", cand, events_only)
    stat = [c for c in o.checks if c.hdu == "EVENTS" and c.test in ("ks", "chi2")]
    assert len(stat) == 21 and all(c.result != "fail" for c in stat), [c.message for c in stat if c.result == "fail"]
    # the same statistical rule catches the 2% energy scale
    o = run(work / "ref.fits", work / "energy.fits", events_only)
    bad = failing(o)
    assert [(c.column, c.test) for c in bad] == [("ENERGY", "chi2")] and bad[0].pvalue < 0.01


def test_streaming_in_small_chunks_and_sparse_gathers(work, monkeypatch):
    monkeypatch.setattr(fits_cmp, "CHUNK_BYTES", 154 * 1000)
    monkeypatch.setattr(tables, "GATHER_ROWS", 700)
    o = run(work / "ref.fits", work / "shuffled.fits", KEYED)
    assert o.verdict == "pass"
    o = run(work / "ref.fits", work / "energy.fits", KEYED)
    assert [c.column for c in failing(o)] == ["ENERGY"]
    assert failing(o)[0].details["differing_rows"] == 32843


def test_known_differences(work):
    live = KnownDifference(file="*.fits", column="ENERGY", reason="new calibration, JIRA LAT-1",
                           expires=dt.date.today() + dt.timedelta(days=30))
    o = run(work / "ref.fits", work / "energy.fits", KEYED, known=[live])
    assert o.verdict == "pass" and o.counts()["known"] == 1
    old = KnownDifference(file="*.fits", column="ENERGY", reason="old", expires=dt.date(2020, 1, 1))
    o = run(work / "ref.fits", work / "ref.fits", KEYED, known=[old])
    assert o.verdict == "fail" and "expired on 2020-01-01" in failing(o)[0].message


def test_reports(work, tmp_path):
    o = run(work / "ref.fits", work / "energy.fits", KEYED)
    paths = write_reports(o, tmp_path / "rep")
    suites = ET.parse(paths["junit"]).getroot()
    cases = suites.findall(".//testcase")
    assert len(cases) == len(o.checks)
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["EVENTS.ENERGY.tolerance"]
    summary = json.loads(paths["json"].read_text())
    assert summary["verdict"] == "fail" and summary["counts"]["fail"] == 1
    row = next(r for r in summary["rows"] if r["result"] == "fail")
    assert row["column"] == "ENERGY" and row["thresholds"] == {"rtol": 1e-6, "atol": 0.0}
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "ENERGY" in html and "FAIL" in html


# ---------------------------------------------------------------------- bad input: exit 2, never a pass

def cli(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_cli_exit_codes(work, tmp_path):
    assert cli("compare", work / "ref.fits", work / "ref.fits").exit_code == 0
    r = cli("compare", work / "ref.fits", work / "energy.fits", "--report", tmp_path / "r")
    assert r.exit_code == 1 and "ENERGY" in r.output and (tmp_path / "r" / "report.html").exists()
    r = cli("compare", work / "missing.fits", work / "ref.fits")
    assert r.exit_code == 2 and "missing.fits does not exist" in r.output


def test_rule_naming_missing_column_is_an_error(work, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("- pattern: '*.fits'\n  comparator: fits\n  columns:\n    ENERGYY: {test: ks}\n")
    for cand in ("ref.fits", "energy.fits"):      # the fast path must not hide it
        r = cli("compare", work / "ref.fits", work / cand, "--rules", rules)
        assert r.exit_code == 2 and "ENERGYY" in r.output and "rule 1" in r.output and "ref.fits" in r.output
    rules.write_text("- pattern: '*.fits'\n  comparator: fitz\n")
    r = cli("compare", work / "ref.fits", work / "ref.fits", "--rules", rules)
    assert r.exit_code == 2 and "rule 1" in r.output and "comparator" in r.output


def test_unreadable_fits_and_uncovered_output(work, tmp_path):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"not a FITS file at all" * 200)
    r = cli("compare", work / "ref.fits", bad)
    assert r.exit_code == 2 and "broken.fits" in r.output and "candidate FITS" in r.output
    trunc = tmp_path / "trunc.fits"
    trunc.write_bytes((work / "ref.fits").read_bytes()[:3_000_000])
    r = cli("compare", work / "ref.fits", trunc)
    assert r.exit_code == 2 and "truncated" in r.output
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(work / "ref.fits", a / "x.fits")
    shutil.copy(work / "ref.fits", b / "x.fits")
    (b / "extra.dat").write_text("x")
    rules = tmp_path / "only-fits.yaml"
    rules.write_text("- {pattern: '*.fits', comparator: fits}\n")
    r = cli("compare", a, b, "--rules", rules)
    assert r.exit_code == 2 and "extra.dat" in r.output and "not covered by any rule" in r.output
    with pytest.raises(VerifyUsageError):
        compare_paths(a, b / "x.fits", default_rules())


def _with_history(work, name, lines, keyword_value):
    def edit(h):
        for line in lines:
            h[1].header.add_history(line)
        h[1].header["INFILE"] = keyword_value
    return perturb(work, name, edit)


def test_history_paths_masked_by_rule_not_ignored(work):
    long_host = "/tmp/pytest-of-someone/pytest-12/relman-data0/results/sciencetools/outputs/reference"
    ref = _with_history(work, "h-ref.fits", [f"copied from {long_host}/crab-mktime.fits[EVENTS] by gtbin"],
                        f"{long_host}/crab-mktime.fits")
    cand = _with_history(work, "h-cand.fits", ["copied from /outputs/crab-mktime.fits[EVENTS] by gtbin"],
                         "/outputs/crab-mktime.fits")
    other = _with_history(work, "h-other.fits", ["copied from /outputs/crab-select.fits[EVENTS] by gtbin"],
                          "/outputs/crab-mktime.fits")
    for d, f in (("hist-ref", ref), ("hist-cand", cand), ("hist-other", other)):
        (work / d).mkdir(exist_ok=True)
        shutil.copy(f, work / d / "p.fits")
    masked = CompareRule(pattern="*.fits", comparator="fits", key_columns=["RUN_ID", "EVENT_ID"],
                         mask_patterns=[r"(/[A-Za-z0-9._+-]+)+/"])
    bare = CompareRule(pattern="*.fits", comparator="fits", key_columns=["RUN_ID", "EVENT_ID"])
    # the long host path wraps over two HISTORY cards: the mask still sees it whole
    with fits.open(ref) as a, fits.open(cand) as b:
        assert len(a[1].header["HISTORY"]) > len(b[1].header["HISTORY"])
    assert compare_paths(work / "hist-ref", work / "hist-cand", [masked]).verdict == "pass"
    assert compare_paths(work / "hist-ref", work / "hist-cand", [bare]).verdict == "fail"
    # a different file name is still a difference: only the folders are masked
    out = compare_paths(work / "hist-ref", work / "hist-other", [masked])
    assert out.verdict == "fail"
    assert any("HISTORY" in c.message and "crab-select" in c.message for c in out.checks if c.result == "fail")


@pytest.mark.parametrize("test", ["ks", "chi2"])
def test_nan_never_passes_a_statistical_test(work, test):
    """0.1 % of ENERGY turned NaN on the real 3FHL events: KS and chi2 drop non-finite values to test the
    rest, so the NaN count itself is checked and fails (it used to pass: the NaNs were only counted)."""
    def some_nan(h):
        rows = np.random.default_rng(7).choice(len(h[1].data), size=len(h[1].data) // 1000, replace=False)
        h[1].data["ENERGY"][rows] = np.nan
    cand = perturb(work, f"nan-{test}.fits", some_nan)
    rule = [CompareRule(pattern="*.fits", comparator="fits", columns={"ENERGY": {"test": test}})]
    o = run(work / "ref.fits", cand, rule)
    bad = [c for c in failing(o) if c.column == "ENERGY"]
    assert o.verdict == "fail" and bad and "non-finite values differ (nan 0 vs 32" in bad[0].message, \
        [c.message for c in failing(o)]
    # the same NaNs on both sides: the distribution of the rest is tested, and passes
    assert run(cand, perturb(work, f"nan-{test}-2.fits", some_nan), rule).verdict == "pass"
