"""Row-by-row comparison of one column, fed chunk by chunk (memory independent of the table size).

Integers, booleans, bit arrays and strings must be equal. Floats are compared NaN-aware: NaN equals
NaN, +inf equals +inf, and any other pair with a non-finite side differs (counted by kind: a change
in the count or the position of NaN/inf values is always a failure). A finite pair passes when it is
within `ulps` units in the last place of the column's type (zeros and denormals all equal), or when
|cand - ref| <= atol + rtol * |ref| (nothing set: bit-exact up to +0/-0). Bit-identical chunks take a
shortcut.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from release_manager.verify.result import FAIL, PASS, Check

SHOW_ROWS = 5


def is_float(dtype: np.dtype) -> bool:
    return dtype.kind in "fc"


def _native(a: np.ndarray) -> np.ndarray:
    if a.dtype.byteorder not in ("=", "|") and a.dtype.byteorder != ("<" if np.little_endian else ">"):
        return a.astype(a.dtype.newbyteorder("="))
    return a


def _bits(a: np.ndarray) -> Optional[np.ndarray]:
    """A same-shape unsigned integer view of the raw bits, when the layout allows one."""
    size = a.dtype.itemsize
    if a.dtype.kind not in "fciub" or size not in (1, 2, 4, 8):
        return None
    try:
        return a.view(f"u{size}")
    except ValueError:
        return np.ascontiguousarray(a).view(f"u{size}")


class ColumnCompare:
    """Accumulates the row-by-row comparison of one column over chunks."""

    def __init__(self, file: str, hdu: str, column: str, test: str, rtol: float = 0.0, atol: float = 0.0,
                 ulps: Optional[int] = None, unit: str = ""):
        self.file, self.hdu, self.column = file, hdu, column
        self.test = test                      # "exact" or "tolerance"
        self.rtol, self.atol = float(rtol), float(atol)
        self.ulps = ulps
        self.unit = unit
        self.rows = 0
        self.bad = 0
        self.nan_mismatch = 0
        self.nonfinite: dict = {}             # "NaN in the candidate only" -> rows, ...
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.max_ulps = 0
        self.examples: List[tuple] = []       # (row, ref value, candidate value)
        self.identical = True
        self.problem: Optional[str] = None

    def feed(self, ref: np.ndarray, cand: np.ndarray, first_row: int, rows: Optional[np.ndarray] = None) -> None:
        """ref and cand: the same rows of this column (leading axis = rows). rows: the reference row
        numbers of the chunk's rows when they are not first_row, first_row+1, ..."""
        n = len(ref)
        self.rows += n
        if self.problem or n == 0:
            return
        if ref.shape[1:] != cand.shape[1:]:
            self.problem = f"element shape differs: {ref.shape[1:]} vs {cand.shape[1:]}"
            return
        floaty = is_float(ref.dtype) or is_float(cand.dtype)
        if floaty and self._mostly_differ:
            badidx = self._tolerance(ref, cand)       # the bit test would only cost a pass
        else:
            rb, cb = _bits(ref), _bits(cand)
            if rb is not None and cb is not None and ref.dtype.itemsize == cand.dtype.itemsize \
                    and ref.dtype.byteorder == cand.dtype.byteorder:
                same = rb == cb
            else:
                same = _equal_generic(ref, cand)
            if same.ndim > 1:
                same = same.reshape(n, -1).all(axis=1)
            nsame = int(np.count_nonzero(same))
            if nsame == n:
                return
            self.identical = False
            if not floaty:
                badidx = np.flatnonzero(~same)
            elif nsame * 4 > n * 3:                   # a few rows differ: look at those only
                idx = np.flatnonzero(~same)
                badidx = idx[self._tolerance(ref[idx], cand[idx])]
            else:
                self._mostly_differ = True
                badidx = self._tolerance(ref, cand)
        self.bad += len(badidx)
        for i in badidx[: max(0, SHOW_ROWS - len(self.examples))]:
            row = int(rows[i]) if rows is not None else first_row + int(i)
            self.examples.append((row, _show(ref[i]), _show(cand[i])))

    _mostly_differ = False

    def _tolerance(self, ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Indices of the rows outside the tolerance, NaN-aware; computed in the column's own float
        precision (an f4 difference of near values is exact; rtol*|ref| errs by ~1e-7 relative)."""
        self.identical = False
        n = len(ref)
        ft = np.result_type(ref.dtype, cand.dtype, np.float32)
        r = ref.astype(ft.newbyteorder("="), copy=False)
        c = cand.astype(ft.newbyteorder("="), copy=False)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            d = c - r
            np.abs(d, out=d)
            ar = np.abs(r)
            lim = ar * ft.type(self.rtol)
            if self.atol:
                lim += ft.type(self.atol)
            ok = d <= lim
            dist = None
            if self.ulps is not None:
                dist = ulp_distance(r, c)
                tiny = ft.type(np.finfo(ft).tiny)
                if ar.size and ar.min() < tiny:
                    # zeros and denormals are all equal: a flush-to-zero build against an IEEE one
                    dist[(ar < tiny) & (np.abs(c) < tiny)] = 0
                ok |= dist <= self.ulps
            # one pass tells whether any pair has a non-finite side (its |diff| is inf or NaN): only
            # then are those pairs taken out (an infinite limit or ULP count must not let inf pass)
            m = d.max() if d.size else 0.0
            finite = None
            if not np.isfinite(m):
                finite = np.isfinite(r) & np.isfinite(c)
                ok &= finite
                fin = d[finite]
                m = fin.max() if fin.size else 0.0
            self.max_abs = max(self.max_abs, float(m))
            if dist is not None and dist.size:
                fd = dist if finite is None else dist[finite]
                if fd.size:
                    self.max_ulps = max(self.max_ulps, int(fd.max()))
            np.divide(d, ar, out=d)
            mr = np.fmax.reduce(d, axis=None) if d.size else 0.0
            if not np.isfinite(mr):
                rel = d[np.isfinite(d)]
                mr = np.fmax.reduce(rel, axis=None) if rel.size else 0.0
            self.max_rel = max(self.max_rel, float(mr))
        if ok.ndim > 1:
            ok = ok.reshape(n, -1).all(axis=1)
        bad = np.flatnonzero(~ok)
        if bad.size and finite is not None:            # NaN == NaN and inf == inf are equal
            rb, cb = r[bad], c[bad]
            rn, cn = np.isnan(rb), np.isnan(cb)
            with np.errstate(invalid="ignore"):
                good = (rb == cb) | (rn & cn)
            nanmis = rn ^ cn
            if good.ndim > 1:
                good = good.reshape(len(bad), -1).all(axis=1)
                nanmis = nanmis.reshape(len(bad), -1).any(axis=1)
            self.nan_mismatch += int(nanmis.sum())
            self._count_nonfinite(rb, cb)
            bad = bad[~good]
        return bad

    def _count_nonfinite(self, r: np.ndarray, c: np.ndarray) -> None:
        """Counts, by kind, the values whose non-finite state differs between the sides."""
        for side, a, b in (("the candidate", c, r), ("the reference", r, c)):
            for kind, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
                k = int(np.count_nonzero(test(a) & ~test(b)))
                if k:
                    key = f"{kind} in {side} only"
                    self.nonfinite[key] = self.nonfinite.get(key, 0) + k

    def _describe(self) -> str:
        parts = []
        if self.ulps is not None:
            parts.append(f"{self.ulps} ULPs")
        if self.atol or self.rtol or not parts:
            u = f" {self.unit}" if self.unit else ""
            parts.append(f"atol={self.atol:g}{u}, rtol={self.rtol:g}" if self.rtol else f"atol={self.atol:g}{u}")
        return " or ".join(parts)

    def check(self) -> Check:
        th = {"rtol": self.rtol, "atol": self.atol} if self.test == "tolerance" else {}
        if self.test == "tolerance" and self.ulps is not None:
            th["ulps"] = self.ulps
        details = {"rows": self.rows, "differing_rows": self.bad}
        if self.unit:
            details["unit"] = self.unit
        if self.problem:
            return Check(self.file, self.test, FAIL, self.hdu, self.column, f"{self.column}: {self.problem}",
                         thresholds=th, details=details)
        u = f" {self.unit}" if self.unit else ""
        if self.test == "tolerance" or self.max_abs:
            details.update(max_abs_diff=self.max_abs, max_rel_diff=self.max_rel)
            if self.ulps is not None:
                details["max_ulps"] = self.max_ulps
        if self.nan_mismatch:
            details["nan_mismatches"] = self.nan_mismatch
        if self.nonfinite:
            details["nonfinite_mismatches"] = dict(self.nonfinite)
        if self.bad == 0:
            msg = "identical" if self.identical else (
                f"equal within {self._describe()} (max |diff| {self.max_abs:.3g}{u}"
                + (f", {self.max_ulps} ULPs" if self.ulps is not None else f", max rel {self.max_rel:.3g}") + ")"
                if self.test == "tolerance" else "equal")
            return Check(self.file, self.test, PASS, self.hdu, self.column, msg, statistic=self.max_abs,
                         thresholds=th, details=details)
        how = f"beyond {self._describe()}" if self.test == "tolerance" else "(exact)"
        msg = f"{self.column}: {self.bad} of {self.rows} rows differ {how}"
        if self.max_abs:
            msg += f"; max |diff| {self.max_abs:.6g}{u}"
            msg += f" ({self.max_ulps} ULPs)" if self.ulps is not None else f", max rel diff {self.max_rel:.3g}"
        if self.nonfinite:
            msg += "; non-finite values moved: " + ", ".join(f"{k}: {v} row(s)" for k, v in sorted(self.nonfinite.items()))
        msg += "; first: " + ", ".join(f"row {r}: {a} vs {b}" for r, a, b in self.examples[:3])
        details["examples"] = [list(e) for e in self.examples]
        return Check(self.file, self.test, FAIL, self.hdu, self.column, msg, statistic=self.max_abs,
                     thresholds=th, details=details)


def ulp_distance(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Units in the last place between two same-type float arrays (native byte order), as int64. The
    bits are mapped to integers that order like the floats (negatives' magnitude bits flipped), so
    the distance is a subtraction; -0 and +0 are 1 apart. Values of opposite signs are far apart by
    construction (a float32 distance is exact in int64; a float64 one is made the int64 maximum, which
    can only fail). Zeros and denormals are judged apart by the caller; non-finite values too."""
    size = r.dtype.itemsize
    it = np.dtype(f"i{size}")
    shift = 8 * size - 1
    mag = it.type((1 << shift) - 1)
    ir, ic = r.view(it), c.view(it)
    kr = ir ^ ((ir >> shift) & mag)
    kc = ic ^ ((ic >> shift) & mag)
    if size < 8:
        return np.abs(kr.astype(np.int64) - kc)
    with np.errstate(over="ignore"):
        d = np.abs(kr - kc)
    d[(kr ^ kc) < 0] = np.iinfo(np.int64).max
    return d


def _equal_generic(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    if ref.dtype == object or cand.dtype == object:
        return np.array([_obj_equal(a, b) for a, b in zip(ref, cand)], dtype=bool)
    try:
        with np.errstate(invalid="ignore"):
            eq = ref == cand
        if is_float(ref.dtype) and is_float(cand.dtype):
            eq = eq | (np.isnan(ref) & np.isnan(cand))
        return np.asarray(eq, dtype=bool)
    except (TypeError, ValueError):
        return np.array([_obj_equal(a, b) for a, b in zip(ref, cand)], dtype=bool)


def _obj_equal(a, b) -> bool:
    try:
        na, nb = np.asarray(a), np.asarray(b)
        if na.shape != nb.shape:
            return False
        if is_float(na.dtype) and is_float(nb.dtype):
            return bool(np.all((na == nb) | (np.isnan(na) & np.isnan(nb))))
        return bool(np.all(na == nb))
    except Exception:  # noqa: BLE001 - unlike things are different
        return a == b


def _show(v) -> str:
    if isinstance(v, np.ndarray):
        if v.dtype == np.int8 and np.isin(v, (0, 70, 84)).all():      # FITS logical (L) arrays: T/F
            return "".join("T" if x == 84 else "F" if x == 70 else "-" for x in v.ravel())
        if v.size > 6:
            return "[" + ", ".join(_show(x) for x in v.ravel()[:6]) + ", ...]"
        return "[" + ", ".join(_show(x) for x in v.ravel()) + "]"
    if isinstance(v, (bytes, np.bytes_)):
        return repr(bytes(v).decode(errors="replace"))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.9g}"
    return str(v.item() if hasattr(v, "item") else v)
