"""Table comparison shared by the FITS and ROOT comparators: rows matched by position or on key
columns, every column compared row by row (exact or tolerance) or as a distribution (ks, chi2),
chunk by chunk so memory does not grow with the table.

A table source gives: nrows, names, dtype(name), read_range(start, stop, names) -> {name: array},
take(sorted row indices, names) -> {name: array}, and chunk_rows.
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, List, Optional

import numpy as np

from release_manager.spec.model import ColumnRule, CompareRule
from release_manager.verify.columns import ColumnCompare, is_float
from release_manager.verify.distributions import (KS_SAMPLE, PLOT_SAMPLE, Collector, RowSampler, chi2_check,
                                                  ks_check, nonfinite_fraction_check)
from release_manager.verify.lat_columns import profile_rule, profile_unit
from release_manager.verify.result import FAIL, PASS, Check, grade_pvalue
from release_manager.verify.rules import column_rule

PLOT_BUDGET = 2_000_000     # sampled values per side kept for plots, over all columns of a table
GATHER_ROWS = 16384         # rows per random-access gather (bounds the pages touched at once)


class Plan:
    """What to do with each column of a table under a rule.

    Reproducible mode: every column row by row; a column's test comes from the rule's `columns:`, then
    the rule's profile (documented LAT tolerances), then the rule's `floats:`. Statistical mode: every
    numeric column as a distribution (integers by chi2 on their values, floats by KS) unless the rule's
    `columns:` says otherwise."""

    def __init__(self, rule: CompareRule, names: List[str], dtypes: Dict[str, np.dtype],
                 units: Optional[Dict[str, str]] = None):
        self.rowwise: Dict[str, tuple] = {}     # name -> (test, rtol, atol, ulps)
        self.stat: Dict[str, ColumnRule] = {}   # name -> ColumnRule (ks / chi2)
        self.ignored: Dict[str, str] = {}       # name -> why
        self.units = {n: (units or {}).get(n) or profile_unit(rule.profile, n) for n in names}
        statistical = rule.mode == "statistical"
        for n in names:
            cr = column_rule(rule, n)
            dt = dtypes[n]
            if cr is None and not statistical:
                cr = profile_rule(rule.profile, n)
            if cr is None and statistical:
                if dt.kind in "iufb":
                    self.stat[n] = ColumnRule(test="ks" if is_float(dt) else "chi2")
                else:
                    self.ignored[n] = "not numeric: no distribution test in statistical mode"
            elif cr is not None and cr.test == "ignore":
                self.ignored[n] = "ignored by the rule"
            elif cr is not None and cr.test in ("ks", "chi2"):
                self.stat[n] = cr
                if cr.rtol is not None or cr.atol is not None or cr.ulps is not None:   # tolerances too: both
                    self.rowwise[n] = ("tolerance", cr.rtol or 0.0, cr.atol or 0.0, cr.ulps)
            elif cr is not None and cr.test == "tolerance":
                explicit = cr.rtol is not None or cr.atol is not None or cr.ulps is not None
                self.rowwise[n] = ("tolerance", cr.rtol if cr.rtol is not None else rule.floats.rtol,
                                   cr.atol if cr.atol is not None else rule.floats.atol,
                                   # a unit tolerance adds to the ULP default, never replaces it with nothing
                                   cr.ulps if cr.ulps is not None else rule.floats.ulps if explicit else None)
            elif cr is not None and cr.test == "exact":
                self.rowwise[n] = ("exact", 0.0, 0.0, None)
            elif is_float(dt) and (rule.floats.rtol or rule.floats.atol or rule.floats.ulps is not None):
                self.rowwise[n] = ("tolerance", rule.floats.rtol, rule.floats.atol, rule.floats.ulps)
            else:
                self.rowwise[n] = ("exact", 0.0, 0.0, None)
        self.plot = [n for n in names if n not in self.ignored and is_float(dtypes[n])
                     and len(dtypes[n].shape) == 0]


def pack_keys(cols: List[np.ndarray]) -> np.ndarray:
    """One sortable 1-D key per row: a uint64 when the key columns are integers of at most 8 bytes
    together, else the raw bytes as a fixed-width byte string."""
    cols = [np.asarray(c) for c in cols]
    if all(c.dtype.kind in "iub" and c.ndim == 1 for c in cols) and sum(c.dtype.itemsize for c in cols) <= 8:
        k = np.zeros(len(cols[0]), dtype=np.uint64)
        for c in cols:
            size = c.dtype.itemsize
            u = c.astype(c.dtype.newbyteorder("="), copy=False).view(f"u{size}").astype(np.uint64)
            k = (k << np.uint64(8 * size)) | u
        return k
    parts = [np.ascontiguousarray(c.astype(c.dtype.newbyteorder(">"), copy=False)).reshape(len(c), -1)
             .view(np.uint8).reshape(len(c), -1) for c in cols]
    raw = np.ascontiguousarray(np.concatenate(parts, axis=1))
    return raw.view(f"S{raw.shape[1]}").reshape(-1)


def match_keys(kr: np.ndarray, kc: np.ndarray):
    """Pairs (ref row, cand row) with equal keys (duplicates paired in order), sorted by ref row;
    plus the sorted unique keys found on one side only."""
    or_, oc = np.argsort(kr, kind="stable"), np.argsort(kc, kind="stable")
    sr, sc = kr[or_], kc[oc]
    if sr.shape == sc.shape and np.array_equal(sr, sc):
        pr, pc = or_, oc
        only_r = only_c = sr[:0]
    else:
        ur, start_r, cnt_r = np.unique(sr, return_index=True, return_counts=True)
        uc, start_c, cnt_c = np.unique(sc, return_index=True, return_counts=True)
        _, ia, ib = np.intersect1d(ur, uc, assume_unique=True, return_indices=True)
        m = np.minimum(cnt_r[ia], cnt_c[ib])
        offs = np.arange(m.sum()) - np.repeat(np.cumsum(m) - m, m)
        pr = or_[np.repeat(start_r[ia], m) + offs]
        pc = oc[np.repeat(start_c[ib], m) + offs]
        only_r, only_c = np.setdiff1d(ur, uc, assume_unique=True), np.setdiff1d(uc, ur, assume_unique=True)
    o = np.argsort(pr, kind="stable")
    return pr[o], pc[o], only_r, only_c


def _read_column(src, names, chunk=None) -> List[np.ndarray]:
    chunk = chunk or src.chunk_rows
    parts = {n: [] for n in names}
    for a in range(0, src.nrows, chunk):
        d = src.read_range(a, min(src.nrows, a + chunk), names)
        for n in names:
            parts[n].append(np.array(d[n]))
    return [np.concatenate(parts[n]) if parts[n] else np.empty(0) for n in names]


class TableCompare:
    def __init__(self, file: str, hdu: str, ref, cand, rule: CompareRule, names: List[str], plots: Optional[dict]):
        self.file, self.hdu, self.ref, self.cand, self.rule = file, hdu, ref, cand, rule
        self.names = names
        self.plan = Plan(rule, names, {n: ref.dtype(n) for n in names}, getattr(ref, "units", None))
        self.plots = plots
        self.checks: List[Check] = []
        self.cmp = {n: ColumnCompare(file, hdu, n, t, rt, at, ulps, self.plan.units.get(n, ""))
                    for n, (t, rt, at, ulps) in self.plan.rowwise.items()}
        self.stat_r = {n: Collector() for n in self.plan.stat}
        self.stat_c = {n: Collector() for n in self.plan.stat}
        self.plot_names = self.plan.plot if plots is not None else []
        self.plot_r = {n: Collector() for n in self.plot_names}
        self.plot_c = {n: Collector() for n in self.plot_names}

    def check(self, test, result, message, column="", **kw) -> Check:
        c = Check(self.file, test, result, self.hdu, column, message, **kw)
        self.checks.append(c)
        return c

    # ------------------------------------------------------------------ driver

    def run(self) -> List[Check]:
        nr, nc = self.ref.nrows, self.cand.nrows
        keys = [k for k in self.rule.key_columns if k in self.names]
        pairs = None
        positional = nr == nc
        if keys and len(keys) == len(self.rule.key_columns):
            kr = _read_column(self.ref, keys)
            kc = _read_column(self.cand, keys)
            pr_keys, pc_keys = pack_keys(kr), pack_keys(kc)
            if nr == nc and np.array_equal(pr_keys, pc_keys):
                self.check("keys", PASS, f"{'+'.join(keys)}: rows in the same order", column="+".join(keys))
            else:
                pr, pc, only_r, only_c = match_keys(pr_keys, pc_keys)
                del pr_keys, pc_keys
                positional = False
                pairs = (pr, pc)
                if len(only_r) or len(only_c) or len(pr) != nr or len(pc) != nc:
                    self.check("keys", FAIL, f"{'+'.join(keys)}: {nr - len(pr)} reference row(s) without a match "
                               f"in the candidate, {nc - len(pc)} candidate row(s) without a match in the reference",
                               column="+".join(keys), details={"matched": int(len(pr)), "ref_rows": nr,
                                                               "cand_rows": nc})
                else:
                    self.check("keys", PASS, f"{'+'.join(keys)}: all {nr} rows matched (order differs)",
                               column="+".join(keys))
            del kr, kc
        self._rows_check(nr, nc)
        if positional:
            self._lockstep(nr)
        else:
            if pairs is not None:
                self._pairs(*pairs)
            self._scan(self.ref, self.stat_r, self.plot_r)
            self._scan(self.cand, self.stat_c, self.plot_c)
        self._finish(compared_rowwise=positional or pairs is not None)
        return self.checks

    def _rows_check(self, nr, nc):
        if self.rule.mode == "statistical" or (not self.plan.rowwise and nr != nc):
            # only distributions are compared: the counts may differ by chance. Two Poisson counts are
            # equal in mean when, given their sum, the candidate's is Binomial(sum, 1/2): an exact test
            from scipy import stats
            p = float(stats.binomtest(nc, nr + nc, 0.5).pvalue) if nr + nc and nr != nc else 1.0
            z = (nc - nr) / np.sqrt(max(nr + nc, 1))
            res = PASS if self.rule.mode == "statistical" else grade_pvalue(p, 0.05, 0.01)
            self.check("rows", res, f"row count {nr} in the reference, {nc} in the candidate "
                       f"(Poisson: z={z:.2f}, p={p:.3g}; only statistical tests apply)", statistic=float(z), pvalue=p,
                       thresholds={"warn_below": 0.05, "fail_below": 0.01}, details={"ref_rows": nr, "cand_rows": nc})
        elif nr != nc:
            self.check("rows", FAIL, f"row count differs: {nr} in the reference, {nc} in the candidate "
                       f"({nc - nr:+d}, {100.0 * (nc - nr) / max(nr, 1):+.2f}%)", statistic=float(nc - nr),
                       details={"ref_rows": nr, "cand_rows": nc})
        else:
            self.check("rows", PASS, f"{nr} rows on both sides", details={"ref_rows": nr, "cand_rows": nc})

    def _wanted(self, rowwise=True, sampled=True):
        names = list(self.plan.rowwise) if rowwise else []
        if sampled:
            names += [n for n in list(self.plan.stat) + self.plot_names if n not in names]
        return names

    def _lockstep(self, n):
        names = self._wanted()
        chunk = min(self.ref.chunk_rows, self.cand.chunk_rows)
        ks = RowSampler(n, KS_SAMPLE)
        pl = RowSampler(n, self._plot_cap(n))
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            r = self.ref.read_range(a, b, names)
            c = self.cand.read_range(a, b, names)
            for name, cc in self.cmp.items():
                cc.feed(r[name], c[name], a)
            self._collect(r, c, ks.mask(b - a), pl.mask(b - a))
        self.sampled = ks.sampled

    def _collect(self, r, c, kmask, pmask):
        for name in self.plan.stat:
            if r is not None:
                self.stat_r[name].add(r[name], kmask)
            if c is not None:
                self.stat_c[name].add(c[name], kmask)
        for name in self.plot_names:
            if r is not None:
                self.plot_r[name].add(r[name], pmask)
            if c is not None:
                self.plot_c[name].add(c[name], pmask)

    def _plot_cap(self, n):
        return max(1000, min(PLOT_SAMPLE, PLOT_BUDGET // max(1, len(self.plot_names))))

    def _pairs(self, pr, pc):
        """Compare matched rows (pr sorted). Small tables: gather directly. Large ones: a bucketed
        join through temporary files, so memory stays at one bucket whatever the table size: the
        candidate is read once in order and its rows are appended to the bucket of their reference
        position; then each bucket is placed in order and compared with the reference rows."""
        names = list(self.plan.rowwise)
        if not names or len(pr) == 0:
            return
        fixed = all(self.cand.dtype(n).kind != "O" and self.ref.dtype(n).kind != "O" for n in names)
        if len(pr) <= 4 * GATHER_ROWS or not fixed:
            for a in range(0, len(pr), GATHER_ROWS):
                ri, ci = pr[a:a + GATHER_ROWS], pc[a:a + GATHER_ROWS]
                o = np.argsort(ci, kind="stable")
                inv = np.empty_like(o)
                inv[o] = np.arange(len(o))
                r = self.ref.take(ri, names)
                cs = self.cand.take(ci[o], names)
                for name, cc in self.cmp.items():
                    cc.feed(r[name], cs[name][inv], 0, rows=ri)
            return
        self._pairs_bucketed(pr, pc, names)

    def _pairs_bucketed(self, pr, pc, names):
        rec_dtype = np.dtype([(n, self.cand.dtype(n)) for n in names])
        size = max(GATHER_ROWS, min(self.cand.chunk_rows, (64 << 20) // max(rec_dtype.itemsize, 1)))
        npairs = len(pr)
        nb = -(-npairs // size)
        pos = np.full(self.cand.nrows, -1, dtype=np.int64)
        pos[pc] = np.arange(npairs)
        with tempfile.TemporaryDirectory(prefix="relman-join-") as tmp:
            files = [open(os.path.join(tmp, str(k)), "w+b") for k in range(nb)]
            try:
                for a in range(0, self.cand.nrows, self.cand.chunk_rows):
                    b = min(self.cand.nrows, a + self.cand.chunk_rows)
                    d = self.cand.read_range(a, b, names)
                    k = pos[a:b]
                    keep = k >= 0
                    k = k[keep]
                    rec = np.empty(len(k), rec_dtype)
                    for n in names:
                        rec[n] = d[n][keep]
                    bucket = k // size
                    order = np.argsort(bucket, kind="stable")
                    k, rec, bucket = k[order], rec[order], bucket[order]
                    cuts = np.flatnonzero(np.diff(bucket)) + 1
                    for kk, rr, bb in zip(np.split(k, cuts), np.split(rec, cuts), np.split(bucket, cuts)):
                        if len(kk):
                            f = files[int(bb[0])]
                            f.write(np.int64(len(kk)).tobytes())
                            f.write(kk.astype("<i8").tobytes())
                            f.write(rr.tobytes())
                del pos
                for bk, f in enumerate(files):
                    lo, hi = bk * size, min(npairs, (bk + 1) * size)
                    placed = np.empty(hi - lo, rec_dtype)
                    f.seek(0)
                    while True:
                        head = f.read(8)
                        if not head:
                            break
                        m = int(np.frombuffer(head, "<i8")[0])
                        kk = np.frombuffer(f.read(8 * m), "<i8")
                        placed[kk - lo] = np.frombuffer(f.read(m * rec_dtype.itemsize), rec_dtype)
                    f.close()
                    ri = pr[lo:hi]
                    r = self.ref.take(ri, names)
                    for name, cc in self.cmp.items():
                        cc.feed(r[name], placed[name], 0, rows=ri)
            finally:
                for f in files:
                    f.close()

    def _scan(self, src, stat, plot):
        names = self._wanted(rowwise=False)
        if not names:
            return
        ks = RowSampler(src.nrows, KS_SAMPLE)
        pl = RowSampler(src.nrows, self._plot_cap(src.nrows))
        for a in range(0, src.nrows, src.chunk_rows):
            b = min(src.nrows, a + src.chunk_rows)
            d = src.read_range(a, b, names)
            km, pm = ks.mask(b - a), pl.mask(b - a)
            for name in self.plan.stat:
                stat[name].add(d[name], km)
            for name in self.plot_names:
                plot[name].add(d[name], pm)
        self.sampled = ks.sampled

    # ------------------------------------------------------------------ results

    def _finish(self, compared_rowwise: bool):
        sampled = getattr(self, "sampled", False)
        results = {}
        family = self.rule.mode == "statistical"       # graded together afterwards (verify/family.py)
        for name in self.names:
            if name in self.plan.ignored:
                self.check("ignore", PASS, f"{name}: {self.plan.ignored[name]}", column=name)
                continue
            if name in self.cmp and compared_rowwise:
                c = self.cmp[name].check()
                self.checks.append(c)
                results[name] = c
            if name in self.plan.stat:
                cr = self.plan.stat[name]
                r, c = self.stat_r[name].values(), self.stat_c[name].values()
                if family:
                    nf = nonfinite_fraction_check(self.file, self.hdu, name, r, c)
                    if nf is not None:
                        self.checks.append(nf)
                if cr.test == "ks":
                    ch = ks_check(self.file, self.hdu, name, r, c, cr.warn_below, cr.fail_below, sampled, family)
                else:
                    ch = chi2_check(self.file, self.hdu, name, r, c, cr.bins, cr.warn_below, cr.fail_below,
                                    self.rule.min_entries, self.rule.min_expected, family)
                self.checks.append(ch)
                results[name] = ch
        if self.plots is not None:
            for name in self.plot_names:
                ch = results.get(name)
                self.plots[f"{self.file}|{self.hdu}|{name}"] = {
                    "file": self.file, "hdu": self.hdu, "column": name,
                    "result": ch.result if ch else PASS, "test": ch.test if ch else "",
                    "ref": self.plot_r[name].values(), "cand": self.plot_c[name].values()}
