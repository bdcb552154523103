"""Row-by-row comparison of one column, fed chunk by chunk (memory independent of the table size).

Integers, booleans, bit arrays and strings must be equal. Floats are compared NaN-aware: NaN equals
NaN, NaN against a number differs, and a pair passes when |cand - ref| <= atol + rtol * |ref|
(rtol = atol = 0 means bit-exact up to +0/-0). Bit-identical chunks take a shortcut.
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

    def __init__(self, file: str, hdu: str, column: str, test: str, rtol: float = 0.0, atol: float = 0.0):
        self.file, self.hdu, self.column = file, hdu, column
        self.test = test                      # "exact" or "tolerance"
        self.rtol, self.atol = float(rtol), float(atol)
        self.rows = 0
        self.bad = 0
        self.nan_mismatch = 0
        self.max_abs = 0.0
        self.max_rel = 0.0
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
        """Indices of the rows outside atol + rtol*|ref|, NaN-aware; computed in the column's own
        float precision (an f4 difference of near values is exact; rtol*|ref| errs by ~1e-7 relative)."""
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
            m = np.fmax.reduce(d, axis=None) if d.size else 0.0
            if np.isfinite(m):
                self.max_abs = max(self.max_abs, float(m))
            else:
                fin = d[np.isfinite(d)]
                if fin.size:
                    self.max_abs = max(self.max_abs, float(fin.max()))
            np.divide(d, ar, out=d)
            rel = d[np.isfinite(d)] if not np.isfinite(np.fmax.reduce(d, axis=None) if d.size else 0) else d
            if rel.size:
                self.max_rel = max(self.max_rel, float(np.fmax.reduce(rel, axis=None)))
        if ok.ndim > 1:
            ok = ok.reshape(n, -1).all(axis=1)
        bad = np.flatnonzero(~ok)
        if bad.size:                                   # NaN == NaN and inf == inf are equal
            rb, cb = r[bad], c[bad]
            rn, cn = np.isnan(rb), np.isnan(cb)
            with np.errstate(invalid="ignore"):
                good = (rb == cb) | (rn & cn)
            nanmis = rn ^ cn
            if good.ndim > 1:
                good = good.reshape(len(bad), -1).all(axis=1)
                nanmis = nanmis.reshape(len(bad), -1).any(axis=1)
            self.nan_mismatch += int(nanmis.sum())
            bad = bad[~good]
        return bad

    def check(self) -> Check:
        th = {"rtol": self.rtol, "atol": self.atol} if self.test == "tolerance" else {}
        details = {"rows": self.rows, "differing_rows": self.bad}
        if self.problem:
            return Check(self.file, self.test, FAIL, self.hdu, self.column, f"{self.column}: {self.problem}",
                         thresholds=th, details=details)
        if self.test == "tolerance" or self.max_abs:
            details.update(max_abs_diff=self.max_abs, max_rel_diff=self.max_rel)
        if self.nan_mismatch:
            details["nan_mismatches"] = self.nan_mismatch
        if self.bad == 0:
            msg = "identical" if self.identical else (
                f"equal within rtol={self.rtol:g}, atol={self.atol:g} (max |diff| {self.max_abs:.3g}, "
                f"max rel {self.max_rel:.3g})" if self.test == "tolerance" else "equal")
            return Check(self.file, self.test, PASS, self.hdu, self.column, msg, statistic=self.max_abs,
                         thresholds=th, details=details)
        how = f"beyond rtol={self.rtol:g}, atol={self.atol:g}" if self.test == "tolerance" else "(exact)"
        msg = f"{self.column}: {self.bad} of {self.rows} rows differ {how}"
        if self.max_abs:
            msg += f"; max |diff| {self.max_abs:.6g}, max rel diff {self.max_rel:.3g}"
        if self.nan_mismatch:
            msg += f"; {self.nan_mismatch} NaN against a number"
        msg += "; first: " + ", ".join(f"row {r}: {a} vs {b}" for r, a, b in self.examples[:3])
        details["examples"] = [list(e) for e in self.examples]
        return Check(self.file, self.test, FAIL, self.hdu, self.column, msg, statistic=self.max_abs,
                     thresholds=th, details=details)


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
