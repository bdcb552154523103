"""Statistical comparisons: unbinned two-sample KS, the two-sample chi2 of a column (a discrete column
binned on its own values, a continuous one on quantiles; bins under a minimum expected count pooled
with their neighbours; scipy's contingency test, so the degrees of freedom are the bins kept minus
one), the test of the NaN/inf fraction (Fisher's exact test), and the Fermi data-monitoring
histogram chi2 (reference scaled to the test's entries, per-bin chi2 with both errors, chi2/ndf,
worst bin, minimum-entries guard). KS is never used on binned data: it is biased there.

Large columns are compared on a fixed-size random row sample (the same rows on both sides when the
row counts agree), so memory does not grow with the table; the sample size is reported.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from release_manager.verify.result import PASS, WARNING, Check, grade_pvalue

def _stats():
    # scipy.stats costs about a second to import: only comparisons that run a statistical test pay it
    from scipy import stats
    return stats


KS_SAMPLE = 1_000_000      # values per side kept for KS / binned chi2
PLOT_SAMPLE = 50_000       # values per side kept for the report's overlay histograms
MAX_DISCRETE = 256         # a column with at most this many distinct values gets one chi2 bin per value


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
        if v.ndim == 2 and (v.dtype.kind == "b" or (v.dtype == np.int8 and np.isin(v, (0, 70, 84)).all())):
            # a bit or logical array (EVENT_CLASS, EVENT_TYPE): the positions of the set bits, so that a
            # distribution test sees which bits are set, not only how many
            v = np.nonzero(v.astype(bool) if v.dtype.kind == "b" else v == 84)[1].astype(np.int16)
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
        st = _stats().ks_2samp(a.astype(np.float64), b.astype(np.float64))
        return float(st.statistic), float(st.pvalue)
    a, b = np.sort(a), np.sort(b)
    # both CDFs are step functions: the largest gap is at a data point, with right limits; at the
    # last element of each run of equal values, one side's CDF is its rank, the other a search.
    d = max(_gaps(a, b).max(), _gaps(b, a).max())
    stat = float(d)
    en = a.size * b.size / (a.size + b.size)
    return stat, float(np.clip(_stats().kstwo.sf(stat, np.round(en)), 0.0, 1.0))


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


def nonfinite_fraction_check(file: str, hdu: str, column: str, ref: np.ndarray,
                             cand: np.ndarray) -> Optional[Check]:
    """Statistical mode: the fraction of NaN/inf values, Fisher's exact test on the 2x2 counts (graded
    with the family); None when neither side has any."""
    a, b = nonfinite_counts(ref), nonfinite_counts(cand)
    ka, kb = sum(a.values()), sum(b.values())
    if ka == 0 and kb == 0:
        return None
    p = float(_stats().fisher_exact([[ka, ref.size - ka], [kb, cand.size - kb]]).pvalue)
    return Check(file, "nonfinite", PASS, hdu, column,
                 f"{column}: non-finite values {ka} of {ref.size} vs {kb} of {cand.size} "
                 f"({', '.join(f'{k} {a[k]} vs {b[k]}' for k in a if a[k] or b[k])}); Fisher p={p:.3g}",
                 pvalue=p, details={"nonfinite_ref": a, "nonfinite_cand": b})


def ks_check(file: str, hdu: str, column: str, ref: np.ndarray, cand: np.ndarray, warn_below: float,
             fail_below: float, sampled: bool = False, family: bool = False) -> Check:
    """family: statistical mode, where non-finite values have their own test and the p-value is graded
    with the other tests of the file (Holm); else graded alone, and any change in NaN/inf counts fails."""
    if not family:
        bad = nonfinite_check(file, hdu, column, "ks", ref, cand, {"warn_below": warn_below,
                                                                   "fail_below": fail_below})
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
    res = PASS if family else grade_pvalue(pvalue, warn_below, fail_below)
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
    out.update(skipped=False, chi2=chi2, ndf=ndf, chi2_ndf=chi2 / ndf, pvalue=float(_stats().chi2.sf(chi2, ndf)),
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


def pooled_bins(hr: np.ndarray, hc: np.ndarray, min_expected: float):
    """Merges neighbouring bins until each kept bin's expected count (under equal distributions, on the
    smaller side) reaches min_expected; a short tail joins the last kept bin. Returns the pooled
    counts and, per kept bin, the slice of original bins it holds."""
    n_r, n_c = hr.sum(), hc.sum()
    frac = min(n_r, n_c) / max(n_r + n_c, 1)
    groups, start, acc = [], 0, 0.0
    for i in range(len(hr)):
        acc += (hr[i] + hc[i]) * frac
        if acc >= min_expected:
            groups.append((start, i + 1))
            start, acc = i + 1, 0.0
    if start < len(hr):
        if groups:
            groups[-1] = (groups[-1][0], len(hr))
        else:
            groups.append((start, len(hr)))
    pr = np.array([hr[a:b].sum() for a, b in groups])
    pc = np.array([hc[a:b].sum() for a, b in groups])
    return pr, pc, groups


def chi2_check(file: str, hdu: str, column: str, ref: np.ndarray, cand: np.ndarray, bins: Optional[int],
               warn_below: float, fail_below: float, min_entries: int = 20, min_expected: float = 5.0,
               family: bool = False) -> Check:
    """Two-sample chi2 of a column. A discrete column (at most MAX_DISCRETE distinct values on the two
    sides together) gets one bin per value; a continuous one `bins` equal-probability bins from the
    quantiles of both sides. Bins expected to hold fewer than min_expected entries are pooled with
    their neighbours (reported); the test is scipy's chi2 contingency test on the 2 x k table, with
    k - 1 degrees of freedom."""
    th = {"warn_below": warn_below, "fail_below": fail_below, "min_expected": min_expected}
    if not family:
        bad = nonfinite_check(file, hdu, column, "chi2", ref, cand, th)
        if bad is not None:
            return bad
    r, c = ref[np.isfinite(ref)], cand[np.isfinite(cand)]
    details: dict = {"entries_ref": int(r.size), "entries_cand": int(c.size)}
    if r.size < min_entries or c.size < min_entries:
        res = PASS if (r.size == 0) == (c.size == 0) else "fail"
        return Check(file, "chi2", res, hdu, column, f"{column}: fewer than the minimum entries ({r.size} / "
                     f"{c.size}, minimum {min_entries}): not tested", thresholds=th, details=details)
    both = np.concatenate([r, c])
    values = np.unique(both)
    if values.size <= MAX_DISCRETE:
        # each value its own bin: quantile edges would merge the two largest values of a discrete column
        hr = np.bincount(np.searchsorted(values, r), minlength=values.size)
        hc = np.bincount(np.searchsorted(values, c), minlength=values.size)
        labels = [f"{v:g}" for v in values]
        details["binning"] = f"discrete: {values.size} distinct values"
    else:
        nb = bins or 50
        edges = np.unique(np.quantile(both, np.linspace(0, 1, nb + 1)))
        edges[-1] = np.nextafter(edges[-1], np.inf)
        hr, _ = np.histogram(r, edges)
        hc, _ = np.histogram(c, edges)
        labels = [f"[{a:.4g}, {b:.4g})" for a, b in zip(edges[:-1], edges[1:])]
        details["binning"] = f"continuous: {len(edges) - 1} quantile bins"
    pr, pc, groups = pooled_bins(hr, hc, min_expected)
    pooled = [f"{labels[a]}..{labels[b - 1]}" for a, b in groups if b - a > 1]
    details.update(bins=len(groups), pooled=pooled[:20])
    if len(groups) < 2:
        return Check(file, "chi2", PASS, hdu, column, f"{column}: all entries in one bin after pooling: not tested",
                     thresholds=th, details=details)
    res_ = _stats().chi2_contingency(np.vstack([pr, pc]), correction=False)
    chi2, p, dof = float(res_.statistic), float(res_.pvalue), int(res_.dof)
    expected = res_.expected_freq
    per = (np.vstack([pr, pc]) - expected) ** 2 / expected
    worst = int(np.argmax(per.sum(axis=0)))
    wa, wb = groups[worst]
    details.update(chi2=chi2, ndf=dof, worst_bin=labels[wa] if wb - wa == 1 else f"{labels[wa]}..{labels[wb - 1]}",
                   worst_counts=[int(pr[worst]), int(pc[worst])])
    res = PASS if family else grade_pvalue(p, warn_below, fail_below)
    msg = (f"{column}: chi2/ndf = {chi2:.1f}/{dof} = {chi2 / dof:.2f}, p={p:.3g} ({details['binning']}"
           f"{f', {len(pooled)} pooled bin(s)' if pooled else ''}); worst bin {details['worst_bin']}: "
           f"{int(pr[worst])} vs {int(pc[worst])}")
    return Check(file, "chi2", res, hdu, column, msg, statistic=chi2 / dof, pvalue=p, thresholds=th, details=details)
