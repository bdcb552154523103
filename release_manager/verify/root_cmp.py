"""ROOT comparator (uproot): every TTree branch by branch with the table rules (rows matched on key
branches when given, e.g. EvtRun + EvtEventId), and every TH1 with the Fermi data-monitoring chi2."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import uproot

from release_manager.spec.model import CompareRule
from release_manager.verify.distributions import hist_chi2, hist_check
from release_manager.verify.result import FAIL, PASS, Check
from release_manager.verify.rules import VerifyUsageError, check_rule_columns, column_rule
from release_manager.verify.tables import TableCompare

CHUNK_ENTRIES = 100_000


class RootTree:
    """A TTree as a table source: branches read in entry ranges as numpy arrays."""

    def __init__(self, tree, relpath: str, side: str):
        self.tree = tree
        self.nrows = int(tree.num_entries)
        self.names, self._dtypes, self.unreadable = [], {}, []
        for b in tree.keys(recursive=True):
            br = tree[b]
            if br.keys():            # a split object: its leaves are listed on their own
                continue
            try:
                interp = br.interpretation
            except Exception:  # noqa: BLE001
                self.unreadable.append(b)
                continue
            if isinstance(interp, uproot.interpretation.identify.UnknownInterpretation):
                self.unreadable.append(b)
                continue
            self.names.append(b)
            dt = getattr(interp, "to_dtype", None)
            self._dtypes[b] = np.dtype(dt) if dt is not None else np.dtype(object)
        self.chunk_rows = CHUNK_ENTRIES
        self._cache = None

    def dtype(self, name):
        return self._dtypes[name]

    def read_range(self, a, b, names):
        if not names:
            return {}
        arrays = self.tree.arrays(names, entry_start=a, entry_stop=b, library="np", how=dict)
        return {n: _regular(arrays[n]) for n in names}

    def take(self, idx, names):
        # key matching on trees: read the spanned entry range, then index (trees here are modest)
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        d = self.read_range(lo, hi, names)
        return {n: v[idx - lo] for n, v in d.items()}


def _regular(a: np.ndarray) -> np.ndarray:
    """Object arrays of equal-length numeric arrays become 2-D arrays; strings stay objects."""
    if a.dtype != object or len(a) == 0:
        return a
    first = a[0]
    if isinstance(first, np.ndarray) and first.dtype != object and all(
            isinstance(x, np.ndarray) and x.shape == first.shape for x in a):
        return np.stack(a)
    return a


def _open(path: Path, relpath: str, side: str):
    try:
        f = uproot.open(path)
        f.keys()
        return f
    except Exception as exc:  # noqa: BLE001 - uproot raises many kinds
        raise VerifyUsageError(f"{relpath}: cannot read the {side} ROOT file {path}: "
                               f"{exc.__class__.__name__}: {exc}") from None


def compare_root(ref_path: Path, cand_path: Path, relpath: str, rule: CompareRule, rules: List[CompareRule],
                 plots: Optional[dict] = None) -> List[Check]:
    fr, fc = _open(ref_path, relpath, "reference"), _open(cand_path, relpath, "candidate")
    try:
        return _compare(fr, fc, relpath, rule, rules, plots)
    finally:
        fr.close()
        fc.close()


def _objects(f):
    return {k.split(";")[0]: cls for k, cls in f.classnames(cycle=False).items()} \
        if _has_cycle_arg(f) else {k.split(";")[0]: cls for k, cls in f.classnames().items()}


def _has_cycle_arg(f):
    try:
        f.classnames(cycle=False)
        return True
    except TypeError:
        return False


def _compare(fr, fc, relpath, rule, rules, plots) -> List[Check]:
    orr, occ = _objects(fr), _objects(fc)
    trees_r = {k: c for k, c in orr.items() if c.startswith("TTree") or c.startswith("TNtuple")}
    hists_r = {k: c for k, c in orr.items() if c.startswith(("TH1", "TH2", "TH3", "TProfile"))}
    try:
        ref_trees = {k: RootTree(fr[k], relpath, "reference") for k in trees_r}
    except Exception as exc:  # noqa: BLE001
        raise VerifyUsageError(f"{relpath}: cannot read the trees of the reference ROOT file: {exc}") from None
    # rules may name branches and histograms (for their warn/fail limits)
    check_rule_columns(rule, rules, relpath, [b for t in ref_trees.values() for b in t.names] + list(hists_r))
    checks: List[Check] = []
    missing = [k for k in orr if k not in occ]
    extra = [k for k in occ if k not in orr]
    checks.append(Check(relpath, "objects", FAIL if (missing or extra) else PASS, "", "",
                        (f"missing in the candidate: {', '.join(missing)}; " if missing else "")
                        + (f"only in the candidate: {', '.join(extra)}" if extra else "")
                        or f"{len(orr)} object(s): {', '.join(sorted(orr))}"))
    for name, tr in ref_trees.items():
        if name not in occ:
            continue
        tc = RootTree(fc[name], relpath, "candidate")
        miss = [b for b in tr.names if b not in tc.names]
        more = [b for b in tc.names if b not in tr.names]
        if miss or more:
            checks.append(Check(relpath, "branches", FAIL, name, ",".join(miss + more),
                                f"branches of {name} differ: "
                                + (f"missing in the candidate: {', '.join(miss[:20])}" if miss else "")
                                + ("; " if miss and more else "")
                                + (f"only in the candidate: {', '.join(more[:20])}" if more else "")))
        else:
            checks.append(Check(relpath, "branches", PASS, name, "", f"{len(tr.names)} branches"))
        if tr.unreadable:
            checks.append(Check(relpath, "branches", PASS, name, "", f"{len(tr.unreadable)} branch(es) uproot "
                                f"cannot interpret, not compared: {', '.join(tr.unreadable[:10])}"))
        common = [b for b in tr.names if b in tc.names]
        checks.extend(TableCompare(relpath, name, tr, tc, rule, common, plots).run())
    for name in hists_r:
        if name not in occ:
            continue
        checks.append(_compare_hist(fr[name], fc[name], relpath, name, rule))
    return checks


def _compare_hist(hr, hc, relpath, name, rule) -> Check:
    """TH1/TH2/TH3: the binning must agree, then the data-monitoring chi2 over all bins."""
    try:
        vr, er = hr.values(flow=False).ravel(), hr.variances(flow=False).ravel()
        vc, ec = hc.values(flow=False).ravel(), hc.variances(flow=False).ravel()
        axes_r = [ax.edges() for ax in hr.axes]
        axes_c = [ax.edges() for ax in hc.axes]
    except Exception as exc:  # noqa: BLE001
        raise VerifyUsageError(f"{relpath}: cannot read histogram {name}: {exc}") from None
    for i, (edges_r, edges_c) in enumerate(zip(axes_r, axes_c)):
        if len(edges_r) != len(edges_c) or not np.allclose(edges_r, edges_c):
            return Check(relpath, "hist-chi2", FAIL, name, "", f"{name}: binning of axis {i} differs "
                         f"({len(edges_r) - 1} bins [{edges_r[0]:g}, {edges_r[-1]:g}] vs "
                         f"{len(edges_c) - 1} bins [{edges_c[0]:g}, {edges_c[-1]:g}])")
    if len(axes_r) != len(axes_c):
        return Check(relpath, "hist-chi2", FAIL, name, "", f"{name}: {len(axes_r)} vs {len(axes_c)} axes")
    cr = column_rule(rule, name)
    warn, fail = (cr.warn_below, cr.fail_below) if cr else (0.05, 0.01)
    h = hist_chi2(vr, vc, er, ec, min_entries=rule.min_entries)
    return hist_check(relpath, name, "", "hist-chi2", h, warn, fail, axes_r[0] if len(axes_r) == 1 else None)
