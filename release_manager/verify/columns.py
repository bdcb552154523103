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
        if self.problem:
            return
        if ref.shape[1:] != cand.shape[1:]:
            self.problem = f"element shape differs: {ref.shape[1:]} vs {cand.shape[1:]}"
            return
        rb, cb = _bits(ref), _bits(cand)
        if rb is not None and cb is not None and ref.dtype.itemsize == cand.dtype.itemsize \
                and ref.dtype.byteorder == cand.dtype.byteorder:
            same = rb == cb
        else:
            same = _equal_generic(ref, cand)
        if same.ndim > 1:
            same = same.reshape(n, -1).all(axis=1)
        if same.all():
            return
        self.identical = False
        idx = np.flatnonzero(~same)
        r, c = ref[idx], cand[idx]
        if is_float(ref.dtype) or is_float(cand.dtype):
            r64, c64 = _native(r).astype(np.float64), _native(c).astype(np.float64)
            rn, cn = np.isnan(r64), np.isnan(c64)
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(c64 - r64)
                ok = (diff <= self.atol + self.rtol * np.abs(r64)) | (r64 == c64) | (rn & cn)
            ok &= ~(rn ^ cn)
            nanmis = rn ^ cn
            finite = np.isfinite(diff)
            if finite.any():
                self.max_abs = max(self.max_abs, float(diff[finite].max()))
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = diff[finite] / np.abs(r64[finite])
                rel = rel[np.isfinite(rel)]
                if rel.size:
                    self.max_rel = max(self.max_rel, float(rel.max()))
            if ok.ndim > 1:
                ok = ok.reshape(len(idx), -1).all(axis=1)
                nanmis = nanmis.reshape(len(idx), -1).any(axis=1)
            self.nan_mismatch += int(nanmis.sum())
            badidx = idx[~ok]
        else:
            badidx = idx
        self.bad += len(badidx)
        for i in badidx[: max(0, SHOW_ROWS - len(self.examples))]:
            row = int(rows[i]) if rows is not None else first_row + int(i)
            self.examples.append((row, _show(ref[i]), _show(cand[i])))

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
