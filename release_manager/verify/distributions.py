"""Statistical comparisons: unbinned two-sample KS, binned chi2, and the Fermi data-monitoring
histogram chi2 (reference scaled to the test's entries, per-bin chi2 with both errors, chi2/ndf,
worst bin, minimum-entries guard). KS is never used on binned data: it is biased there.

Large columns are compared on a fixed-size random row sample (the same rows on both sides when the
row counts agree), so memory does not grow with the table; the sample size is reported.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import stats

from release_manager.verify.result import PASS, WARNING, Check, grade_pvalue

KS_SAMPLE = 1_000_000      # values per side kept for KS / binned chi2
PLOT_SAMPLE = 50_000       # values per side kept for the report's overlay histograms


class RowSampler:
    """Bernoulli row masks with a fixed expected sample size, chunk by chunk, reproducible."""

    def __init__(self, nrows: int, cap: int, seed: int = 12345):
        self.p = 1.0 if nrows <= cap else cap / nrows
        self.rng = np.random.default_rng(seed)

    @property
    def sampled(self) -> bool:
        return self.p < 1.0

    def mask(self, n: int) -> Optional[np.ndarray]:
        if self.p >= 1.0:
            return None
        return self.rng.random(n) < self.p


class Collector:
    """Keeps the sampled values of a column (flattened, native float64 at the end)."""

    def __init__(self):
        self.parts = []
        self.n = 0

    def add(self, values: np.ndarray, mask: Optional[np.ndarray]) -> None:
        v = values if mask is None else values[mask]
        v = np.asarray(v)
        if v.dtype.kind == "b":
            v = v.astype(np.int8)
        if v.dtype.kind not in "iufb":
            return
        v = v.reshape(-1)
        self.parts.append(v.astype(v.dtype.newbyteorder("="), copy=True))
        self.n += v.size

    def values(self) -> np.ndarray:
        """The values in their own precision (float32 stays float32: half the memory to sort)."""
        if not self.parts:
            return np.empty(0)
        v = np.concatenate(self.parts)
        return v if v.dtype.kind == "f" else v.astype(np.float64)


def ks_2samp(a: np.ndarray, b: np.ndarray):
    """Two-sample KS (two-sided). Up to 10,000 values a side: scipy's, with its exact p-value. Above:
    the same statistic from two sorts and a merge, in the values' own precision, with scipy's
    asymptotic p-value (kstwo at the effective size n1*n2/(n1+n2)), as scipy's 'asymp' method."""
    if max(a.size, b.size) <= 10_000:
        st = stats.ks_2samp(a.astype(np.float64), b.astype(np.float64))
        return float(st.statistic), float(st.pvalue)
    a, b = np.sort(a), np.sort(b)
    # both CDFs are step functions: the largest gap is at a data point, with right limits; at the
    # last element of each run of equal values, one side's CDF is its rank, the other a search.
    d = max(_gaps(a, b).max(), _gaps(b, a).max())
    stat = float(d)
    en = a.size * b.size / (a.size + b.size)
    return stat, float(np.clip(stats.kstwo.sf(stat, np.round(en)), 0.0, 1.0))


def _gaps(s: np.ndarray, other: np.ndarray) -> np.ndarray:
    last = np.empty(s.size, dtype=bool)
    last[-1] = True
    np.not_equal(s[1:], s[:-1], out=last[:-1])
    ends = np.flatnonzero(last)
    return np.abs((ends + 1) / s.size - np.searchsorted(other, s[ends], side="right") / other.size)


def nonfinite_counts(values: np.ndarray) -> dict:
    v = np.asarray(values)
    if v.dtype.kind != "f":
        return {"nan": 0, "+inf": 0, "-inf": 0}
    return {"nan": int(np.isnan(v).sum()), "+inf": int(np.isposinf(v).sum()), "-inf": int(np.isneginf(v).sum())}


def nonfinite_check(file: str, hdu: str, column: str, test: str, ref: np.ndarray, cand: np.ndarray,
                    th: dict) -> Optional[Check]:
    """NaN and infinities never pass a distribution test by being dropped: a different count is a failure."""
    a, b = nonfinite_counts(ref), nonfinite_counts(cand)
    if a == b:
        return None
    diff = ", ".join(f"{k} {a[k]} vs {b[k]}" for k in a if a[k] != b[k])
    return Check(file, test, "fail", hdu, column, f"{column}: non-finite values differ ({diff}; of {ref.size} vs "
                 f"{cand.size} values)", thresholds=th, details={"nonfinite_ref": a, "nonfinite_cand": b})


def ks_check(file: str, hdu: str, column: str, ref: np.ndarray, cand: np.ndarray, warn_below: float,
             fail_below: float, sampled: bool = False) -> Check:
    bad = nonfinite_check(file, hdu, column, "ks", ref, cand, {"warn_below": warn_below, "fail_below": fail_below})
    if bad is not None:
        return bad
    rn, cn = ~np.isfinite(ref), ~np.isfinite(cand)
    r, c = ref[~rn], cand[~cn]
    th = {"warn_below": warn_below, "fail_below": fail_below}
    details = {"n_ref": int(r.size), "n_cand": int(c.size), "sampled": sampled}
    if rn.any() or cn.any():
        details.update(nan_ref=int(rn.sum()), nan_cand=int(cn.sum()))
    if r.size == 0 or c.size == 0:
        res = PASS if r.size == c.size else "fail"
        return Check(file, "ks", res, hdu, column, f"{column}: no finite values on "
                     f"{'both sides' if res == PASS else 'one side'}", thresholds=th, details=details)
    statistic, pvalue = ks_2samp(r, c)
    res = grade_pvalue(pvalue, warn_below, fail_below)
    note = " (random row sample)" if sampled else ""
    msg = f"{column}: KS D={statistic:.4g}, p={pvalue:.3g}{note}"
    if res != PASS:
        msg += f" below {'fail' if res != WARNING else 'warning'} limit " \
               f"{fail_below if res != WARNING else warn_below:g}"
    return Check(file, "ks", res, hdu, column, msg, statistic=statistic, pvalue=pvalue,
                 thresholds=th, details=details)


def hist_chi2(ref_counts, test_counts, ref_var=None, test_var=None, min_entries: int = 20) -> dict:
    """Data-monitoring chi2: the reference scaled to the test's entries, per-bin chi2 with both errors.
    Returns chi2, ndf, chi2/ndf, p-value, worst bin and its chi2; `skipped` when under min_entries."""
    r = np.asarray(ref_counts, dtype=np.float64)
    t = np.asarray(test_counts, dtype=np.float64)
    rv = r.copy() if ref_var is None else np.asarray(ref_var, dtype=np.float64)
    tv = t.copy() if test_var is None else np.asarray(test_var, dtype=np.float64)
    nr, nt = r.sum(), t.sum()
    out = {"entries_ref": float(nr), "entries_test": float(nt)}
    if nr < min_entries or nt < min_entries:
        out.update(skipped=True, chi2=0.0, ndf=0, chi2_ndf=0.0, pvalue=1.0, worst_bin=None, worst_chi2=0.0)
        return out
    s = nt / nr
    expect = s * r
    var = tv + s * s * np.abs(rv)
    use = var > 0
    per = np.zeros_like(r)
    per[use] = (t[use] - expect[use]) ** 2 / var[use]
    ndf = max(int(use.sum()) - 1, 1)
    chi2 = float(per.sum())
    worst = int(np.argmax(per)) if per.size else None
    out.update(skipped=False, chi2=chi2, ndf=ndf, chi2_ndf=chi2 / ndf, pvalue=float(stats.chi2.sf(chi2, ndf)),
               worst_bin=worst, worst_chi2=float(per[worst]) if worst is not None else 0.0)
    return out


def hist_check(file: str, hdu: str, column: str, test: str, h: dict, warn_below: float, fail_below: float,
               edges=None) -> Check:
    th = {"warn_below": warn_below, "fail_below": fail_below}
    if h["skipped"]:
        return Check(file, test, PASS, hdu, column, f"{column or hdu}: fewer than the minimum entries "
                     f"({h['entries_ref']:.0f} / {h['entries_test']:.0f}): not tested", thresholds=th, details=h)
    res = grade_pvalue(h["pvalue"], warn_below, fail_below)
    wb = h["worst_bin"]
    where = f"bin {wb}" + (f" [{edges[wb]:.4g}, {edges[wb + 1]:.4g})" if edges is not None and wb is not None else "")
    msg = (f"{column or hdu}: chi2/ndf = {h['chi2']:.1f}/{h['ndf']} = {h['chi2_ndf']:.2f}, p={h['pvalue']:.3g}; "
           f"worst {where} chi2 {h['worst_chi2']:.1f}")
    return Check(file, test, res, hdu, column, msg, statistic=h["chi2_ndf"], pvalue=h["pvalue"], thresholds=th,
                 details=h)


def chi2_check(file: str, hdu: str, column: str, ref: np.ndarray, cand: np.ndarray, bins: Optional[int],
               warn_below: float, fail_below: float, min_entries: int = 20) -> Check:
    """Binned chi2 of a stochastic column: equal-probability bins from the reference's quantiles."""
    bad = nonfinite_check(file, hdu, column, "chi2", ref, cand, {"warn_below": warn_below, "fail_below": fail_below})
    if bad is not None:
        return bad
    r, c = ref[np.isfinite(ref)], cand[np.isfinite(cand)]
    nb = bins or 50
    if r.size == 0:
        return hist_check(file, hdu, column, "chi2", hist_chi2([0], [c.size], min_entries=max(min_entries, 1)),
                          warn_below, fail_below)
    edges = np.unique(np.quantile(r, np.linspace(0, 1, nb + 1)))
    if edges.size < 2:
        edges = np.array([r.min() - 0.5, r.max() + 0.5])
    lo, hi = min(edges[0], c.min() if c.size else edges[0]), max(edges[-1], c.max() if c.size else edges[-1])
    edges[0], edges[-1] = lo, np.nextafter(hi, np.inf)
    hr, _ = np.histogram(r, edges)
    hc, _ = np.histogram(c, edges)
    return hist_check(file, hdu, column, "chi2", hist_chi2(hr, hc, min_entries=min_entries), warn_below,
                      fail_below, edges)
