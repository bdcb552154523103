"""Verdicts to trust (issue 15), on the real 3FHL events: non-finite values never pass, tolerances that
fit the LAT columns (ULPs by default, units where they matter), the statistical mode with a family-wise
false-alarm rate, the chi2 of discrete columns, HISTORY masking."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from pydantic import ValidationError

from release_manager.spec.model import CompareRule
from release_manager.verify.compare import compare_paths
from release_manager.verify.distributions import chi2_check
from release_manager.verify.family import holm_adjust
from release_manager.verify.rules import VerifyUsageError, default_rules, load_rules_file

from conftest import FT1_3FHL

NO_DATES = ["DATE", "CREATOR", "DATASUM", "CHECKSUM"]
OLD_DEFAULT = [CompareRule(pattern="*.fits", comparator="fits", floats={"rtol": 1e-6, "atol": 0.0})]
FT1 = [CompareRule(pattern="*.fits", comparator="fits", profile="ft1")]
STAT = [CompareRule(pattern="*.fits", comparator="fits", mode="statistical", ignore_keywords=NO_DATES + ["NDSKEYS"]
                    + ["DS*"])]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    d = tmp_path_factory.mktemp("trust")
    with fits.open(FT1_3FHL) as h:
        h.writeto(d / "ref.fits")
    return d


def edited(events, name, fn):
    out = events / name
    with fits.open(events / "ref.fits") as h:
        fn(h[1].data, h)
        h.writeto(out, overwrite=True)
    return out


def resampled(events, name, seed, fn=None):
    """A bootstrap resample of the events with a Poisson row count: an equivalent stochastic rerun."""
    def boot(data, h):
        rng = np.random.default_rng(seed)
        h[1].data = data[rng.integers(0, len(data), rng.poisson(len(data)))]
        if fn:
            fn(h[1].data, h)
    return edited(events, name, boot)


def failing(o):
    return [c for c in o.checks if c.result == "fail"]


# ---------------------------------------------------------------- 1. NaN and infinities

def test_inf_against_minus_inf_fails_under_a_relative_tolerance(events):
    """An infinite reference made the limit rtol*|ref| infinite: -inf passed against +inf."""
    def flip(d, h):
        d["ENERGY"][3] = -np.inf
    ref = edited(events, "inf-ref.fits", lambda d, h: d["ENERGY"].__setitem__(3, np.inf))
    cand = edited(events, "inf-cand.fits", flip)
    o = compare_paths(ref, cand, OLD_DEFAULT)
    bad = failing(o)
    assert [c.column for c in bad] == ["ENERGY"] and "-inf in the candidate only: 1 row(s)" in bad[0].message
    assert compare_paths(ref, edited(events, "inf-same.fits", lambda d, h: d["ENERGY"].__setitem__(3, np.inf)),
                         OLD_DEFAULT).verdict == "pass"


@pytest.mark.parametrize("rules", [default_rules(), OLD_DEFAULT, FT1], ids=["ulps", "rtol", "ft1"])
def test_nan_moved_to_other_rows_fails_with_counts_in_row_modes(events, rules):
    """The same number of NaNs, in other rows: a change of position, counted by kind."""
    rows = np.random.default_rng(5).choice(32843, size=33, replace=False)
    ref = edited(events, "nanpos-ref.fits", lambda d, h: d["RA"].__setitem__(rows, np.nan))
    cand = edited(events, "nanpos-cand.fits", lambda d, h: d["RA"].__setitem__(rows + 1, np.nan))
    bad = [c for c in failing(compare_paths(ref, cand, rules)) if c.column == "RA"]
    assert bad and "NaN in the candidate only: 33 row(s)" in bad[0].message \
        and "NaN in the reference only: 33 row(s)" in bad[0].message, [c.message for c in bad]


def test_nan_fraction_fails_in_statistical_mode(events):
    """0.1 % of ENERGY NaN in an otherwise equivalent rerun: Fisher's test of the NaN fraction fails
    even after the family-wise correction; the distribution of the finite values still passes."""
    def nan(d, h):
        d["ENERGY"][np.random.default_rng(8).choice(len(d), len(d) // 1000, replace=False)] = np.nan
    a = resampled(events, "stat-a.fits", 1)
    b = resampled(events, "stat-nan.fits", 2, nan)
    o = compare_paths(a, b, STAT)
    bad = failing(o)
    assert [(c.column, c.test) for c in bad] == [("ENERGY", "nonfinite")], [c.message for c in bad]
    assert "non-finite values 0 of" in bad[0].message and bad[0].details["p_holm"] < 0.01
    ks = next(c for c in o.checks if c.column == "ENERGY" and c.test == "ks")
    assert ks.result == "pass" and ks.details["nan_cand"] == bad[0].details["nonfinite_cand"]["nan"]


# ---------------------------------------------------------------- 2. tolerances that fit the columns

def test_time_shift_of_10_s_fails_by_default_and_under_ft1_and_passed_with_rtol(events):
    cand = edited(events, "time10.fits", lambda d, h: d["TIME"].__iadd__(10.0))
    assert compare_paths(events / "ref.fits", cand, OLD_DEFAULT).verdict == "pass"      # the old hole
    for rules in (default_rules(), FT1):
        bad = failing(compare_paths(events / "ref.fits", cand, rules))
        assert [c.column for c in bad] == ["TIME"], [c.message for c in bad]
        assert "max |diff| 10 s" in bad[0].message and bad[0].details["unit"] == "s"


def test_ulp_noise_denormals_and_signed_zeros_pass_by_default(events):
    """A rebuild with another libm moves values by an ULP or two; a flush-to-zero build turns a
    denormal into 0; both are equal under the default 4 ULPs. 5 ULPs fail, shown in ULPs."""
    rng = np.random.default_rng(4)
    rows = rng.choice(32843, 3000, replace=False)

    def noise(steps):
        def fn(d, h):
            for col in ("ENERGY", "THETA"):
                v = d[col][rows].astype(np.float32)
                for _ in range(steps):
                    v = np.nextafter(v, np.float32(np.inf))
                d[col][rows] = v
            d["DIFRSP1"][:3] = [0.0, -0.0, 1e-45]
            d["DIFRSP1"][3:6] = [1e-40, 1e-45, 0.0]
        return fn
    ref = edited(events, "ulp-ref.fits", lambda d, h: (d["DIFRSP1"].__setitem__(slice(0, 6), [1e-45, 0.0, 0.0,
                                                                                           0.0, -0.0, 1e-42])))
    two = edited(events, "ulp2.fits", noise(2))
    o = compare_paths(ref, two, default_rules())
    assert o.verdict == "pass", [c.message for c in failing(o)]
    energy = next(c for c in o.checks if c.column == "ENERGY")
    assert energy.details["max_ulps"] == 2 and "4 ULPs" in energy.message
    bad = failing(compare_paths(ref, edited(events, "ulp5.fits", noise(5)), default_rules()))
    assert sorted(c.column for c in bad) == ["ENERGY", "THETA"]
    assert all("3000 of 32843 rows differ beyond 4 ULPs" in c.message and "(5 ULPs)" in c.message for c in bad)
    # the same pair, bit-exact: the zero/denormal pairs and the noise all fail
    exact = [CompareRule(pattern="*.fits", comparator="fits", floats={"rtol": 0, "atol": 0})]
    assert {c.column for c in failing(compare_paths(ref, two, exact))} == {"ENERGY", "THETA", "DIFRSP1"}


def test_ft1_profile_reports_angles_in_degrees(events):
    cand = edited(events, "radec.fits", lambda d, h: (d["RA"].__iadd__(0.1), d["DEC"].__iadd__(0.1)))
    bad = failing(compare_paths(events / "ref.fits", cand, FT1))
    assert sorted(c.column for c in bad) == ["DEC", "RA"]
    assert all("atol=0.0001 deg" in c.message and " deg (" in c.message for c in bad), [c.message for c in bad]
    tiny = edited(events, "radec-tiny.fits", lambda d, h: d["DEC"].__iadd__(np.float32(5e-5)))
    assert compare_paths(events / "ref.fits", tiny, FT1).verdict == "pass"


# ---------------------------------------------------------------- 3. the two modes

def test_statistical_mode_passes_equivalent_reruns_and_catches_a_2_percent_energy_scale(events):
    a = resampled(events, "stat-a.fits", 1)
    o = compare_paths(a, resampled(events, "stat-b.fits", 3), STAT)
    assert o.verdict == "pass", [c.message for c in failing(o)]
    fam = [c for c in o.checks if "p_holm" in c.details]
    tests = {c.test for c in fam}
    assert {"rows", "ks", "chi2"} <= tests and len(fam) >= 20
    assert all(c.details["p_holm"] >= c.pvalue for c in fam) and all(c.thresholds["family_size"] == len(fam)
                                                                     for c in fam)
    rows = next(c for c in fam if c.test == "rows")
    assert "Poisson" in rows.message or "z=" in rows.message
    # bit arrays are tested on which bits are set; integers on their values
    conv = next(c for c in fam if c.column == "CONVERSION_TYPE")
    assert conv.test == "chi2" and conv.details["binning"] == "discrete: 2 distinct values"
    scaled = resampled(events, "stat-e2.fits", 3, lambda d, h: d["ENERGY"].__imul__(1.02))
    bad = failing(compare_paths(a, scaled, STAT))
    assert [(c.column, c.test) for c in bad] == [("ENERGY", "ks")] and bad[0].details["p_holm"] < 0.01


def test_holm_adjusted_p_values():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> 0.06 (monotone)
    assert np.allclose(holm_adjust([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm_adjust([0.5, 0.9]), [1.0, 1.0])       # never below a smaller p's


def test_rules_file_modes_and_profiles_validated(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text("- {pattern: '*.fits', comparator: fits, mode: statistical, profile: ft1}\n")
    assert load_rules_file(f)[0].mode == "statistical"
    for bad, word in (("mode: stochastic", "mode"), ("profile: ft3", "profile"), ("history: drop", "history"),
                      ("family_alpha: 0.2, family_warn: 0.1", "family_alpha")):
        f.write_text(f"- {{pattern: '*.fits', comparator: fits, {bad}}}\n")
        with pytest.raises(VerifyUsageError, match=f"rule 1: .*{word}"):
            load_rules_file(f)
    with pytest.raises(ValidationError):
        CompareRule(pattern="*", comparator="fits", floats={"ulps": -1})
    assert CompareRule(pattern="*", comparator="fits").floats.ulps == 4
    assert CompareRule(pattern="*", comparator="fits", floats={"rtol": 0}).floats.ulps is None


# ---------------------------------------------------------------- 4. chi2 on discrete columns

def test_discrete_chi2_sees_a_shift_between_the_two_highest_values(events):
    """A quarter of the back-converting events (CONVERSION_TYPE 1, the highest value) become front (0):
    quantile bins merged 0 and 1 into one bin and passed; one bin per value fails, with 1 degree of freedom."""
    def move(d, h):
        back = np.flatnonzero(d["CONVERSION_TYPE"] == 1)
        d["CONVERSION_TYPE"][back[: len(back) // 4]] = 0
    cand = edited(events, "conv.fits", move)
    with fits.open(events / "ref.fits") as a, fits.open(cand) as b:
        r = a[1].data["CONVERSION_TYPE"].astype(float)
        c = b[1].data["CONVERSION_TYPE"].astype(float)
    ch = chi2_check("f", "EVENTS", "CONVERSION_TYPE", r, c, None, 0.05, 0.01)
    assert ch.result == "fail" and ch.details["ndf"] == 1 and ch.details["bins"] == 2
    rule = [CompareRule(pattern="*.fits", comparator="fits", columns={"CONVERSION_TYPE": {"test": "chi2"}})]
    bad = failing(compare_paths(events / "ref.fits", cand, rule))
    assert [c.column for c in bad] == ["CONVERSION_TYPE"] and "discrete: 2 distinct values" in bad[0].message


def test_rare_values_are_pooled_explicitly_and_the_guard_counts_bins(events):
    with fits.open(events / "ref.fits") as a:
        r = a[1].data["CONVERSION_TYPE"].astype(float)
    r = r.copy()
    r[:3] = 2                                        # a rare value: expected count 1.5 < 5
    c = r.copy()
    c[:2] = 0
    ch = chi2_check("f", "EVENTS", "CONVERSION_TYPE", r, c, None, 0.05, 0.01)
    assert ch.details["pooled"] == ["1..2"] and ch.details["bins"] == 2 and ch.details["ndf"] == 1
    assert ch.result == "pass"
    few = chi2_check("f", "EVENTS", "X", r[:10], c[:10], None, 0.05, 0.01, min_entries=20)
    assert "fewer than the minimum entries" in few.message


# ---------------------------------------------------------------- 5. HISTORY and COMMENT

def test_history_folders_and_dates_masked_by_default(events):
    def hist(line):
        return lambda d, h: (h[1].header.add_history(line), h[1].header.add_comment("made 2026-11-30T01:02:03"))
    ref = edited(events, "h1.fits", hist("gtselect infile=/tmp/pytest-of-someone/pytest-3/work/crab.fits on "
                                         "2026-11-30 at 01:02:03"))
    cand = edited(events, "h2.fits", hist("gtselect infile=/outputs/crab.fits on 2026-12-01 at 04:05:06"))
    other = edited(events, "h3.fits", hist("gtselect infile=/outputs/vela.fits on 2026-12-01 at 04:05:06"))
    assert compare_paths(ref, cand, default_rules()).verdict == "pass"
    bad = failing(compare_paths(ref, other, default_rules()))
    assert len(bad) == 1 and "HISTORY" in bad[0].message and "vela" in bad[0].message
    verbatim = [CompareRule(pattern="*.fits", comparator="fits", history="exact")]
    assert failing(compare_paths(ref, cand, verbatim))[0].test == "header"
    skip = [CompareRule(pattern="*.fits", comparator="fits", history="ignore")]
    assert compare_paths(ref, other, skip).verdict == "pass"


def test_compare_command_mode_and_profile(events, tmp_path):
    from click.testing import CliRunner

    from release_manager.cli import main
    cand = edited(events, "cli-time.fits", lambda d, h: d["TIME"].__iadd__(10.0))
    r = CliRunner().invoke(main, ["compare", str(events / "ref.fits"), str(cand), "--profile", "ft1"])
    assert r.exit_code == 1 and "TIME" in r.output and "max |diff| 10 s" in r.output, r.output
    r = CliRunner().invoke(main, ["compare", str(events / "ref.fits"), str(cand), "--mode", "statistical", "-v"])
    assert r.exit_code == 0 and "Holm-adjusted" in r.output, r.output
    rules = tmp_path / "r.yaml"
    rules.write_text("- {pattern: '*', comparator: fits}\n")
    r = CliRunner().invoke(main, ["compare", str(events / "ref.fits"), str(cand), "--rules", str(rules),
                                  "--mode", "statistical"])
    assert r.exit_code == 2 and "rules file" in r.output and "mode:" in r.output, r.output
