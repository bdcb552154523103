"""FITS comparator (astropy): per HDU the header keywords, and the data: tables column by column
(row count, exact integers/bits/strings, float tolerances, rows matched on key columns), images as
arrays. Binary table rows are read straight from the file in slices (no memmap kept alive), so
memory does not grow with the file; identical data sections are recognised from their raw bytes.
"""
from __future__ import annotations

import fnmatch
import gzip
import os
import re
import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np
from astropy.io import fits

from release_manager.spec.model import CompareRule
from release_manager.verify.columns import ColumnCompare
from release_manager.verify.fastpath import identical_ranges
from release_manager.verify.result import FAIL, PASS, Check
from release_manager.verify.rules import VerifyUsageError, check_rule_columns, ignore_keywords
from release_manager.verify.tables import TableCompare

CHUNK_BYTES = 16 << 20
STRUCTURAL = re.compile(r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|EXTEND|THEAP|"
                        r"T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP|BCOL)\d+|TL(MIN|MAX)\d+)$")
COLUMN_ATTRS = ("TFORM", "TUNIT", "TDIM", "TNULL", "TSCAL", "TZERO", "TDISP", "TLMIN", "TLMAX")
COMMENTARY = ("HISTORY", "COMMENT", "")


class FitsFile:
    """An opened FITS file: astropy for the headers, a plain (or gzip) file object for the data."""

    def __init__(self, path: Path, relpath: str, side: str):
        self.path, self.side = Path(path), side
        self.gz = str(path).endswith(".gz")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.hdul = fits.open(path, memmap=not self.gz, lazy_load_hdus=False)
                self.infos = [h.fileinfo() for h in self.hdul]
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds
            raise VerifyUsageError(f"{relpath}: cannot read the {side} FITS file {path}: "
                                   f"{exc.__class__.__name__}: {exc}") from None
        size = None if self.gz else os.path.getsize(path)
        for h, info in zip(self.hdul, self.infos):
            need = info["datLoc"] + _data_bytes(h)
            if size is not None and need > size:
                raise VerifyUsageError(f"{relpath}: the {side} FITS file {path} is truncated: HDU "
                                       f"{_hdu_name(h)} needs {need} bytes, the file has {size}")
        self.fh = gzip.open(path, "rb") if self.gz else open(path, "rb")
        self._raw_cache = {}

    def close(self):
        self.fh.close()
        self.hdul.close()

    def raw_all(self, i: int) -> bytes:
        """gzip input only: the whole data section in memory (gzip cannot seek backwards cheaply)."""
        if i not in self._raw_cache:
            self._raw_cache = {i: self.read_at(self.infos[i]["datLoc"], _data_bytes(self.hdul[i]))}
        return self._raw_cache[i]

    def read_at(self, offset: int, n: int) -> bytes:
        self.fh.seek(offset)
        data = self.fh.read(n)
        if len(data) != n:
            raise VerifyUsageError(f"{self.path}: truncated data at byte {offset}")
        return data


def _data_bytes(h) -> int:
    hd = h.header
    if hd.get("NAXIS", 0) == 0:
        return 0
    n = abs(hd.get("BITPIX", 8)) // 8
    for i in range(1, hd["NAXIS"] + 1):
        n *= hd.get(f"NAXIS{i}", 0)
    return hd.get("GCOUNT", 1) * (n + hd.get("PCOUNT", 0) * (abs(hd.get("BITPIX", 8)) // 8))


def _hdu_name(h) -> str:
    return h.name or "PRIMARY"


class FitsTable:
    """A binary table HDU as a table source: rows read in slices with the raw big-endian dtype."""

    def __init__(self, f: FitsFile, index: int):
        self.f, self.index = f, index
        h = f.hdul[index]
        self.hdu = h
        self.nrows = h.header["NAXIS2"]
        self.rowlen = h.header["NAXIS1"]
        cols = h.columns
        self.names = list(cols.names)
        self.units = {c.name: (c.unit or "") for c in cols}
        native = cols.dtype
        self.raw_dtype = native.newbyteorder(">")
        if self.raw_dtype.itemsize != self.rowlen:   # padded or odd layouts: explicit offsets
            self.raw_dtype = np.dtype({"names": native.names,
                                       "formats": [native.fields[n][0].newbyteorder(">") for n in native.names],
                                       "offsets": [native.fields[n][1] for n in native.names],
                                       "itemsize": self.rowlen})
        self.vla = {c.name for c in cols if c.format.startswith(("P", "Q")) or "P" in c.format or "Q" in c.format}
        self.loc = f.infos[index]["datLoc"]
        self.chunk_rows = max(256, CHUNK_BYTES // max(self.rowlen, 1))
        self._buf = None

    def dtype(self, name):
        return self.raw_dtype.fields[name][0]

    def _decode(self, buf, n):
        return np.frombuffer(buf, dtype=self.raw_dtype, count=n)

    def read_range(self, a, b, names):
        if self.f.gz:
            rec = self._decode(self.f.raw_all(self.index)[a * self.rowlen:b * self.rowlen], b - a)
        else:
            # one reused buffer per table: no fresh pages per chunk; the arrays handed out are views
            # into it, valid until the next read (callers copy what they keep)
            nbytes = (b - a) * self.rowlen
            if self._buf is None or len(self._buf) < nbytes:
                self._buf = bytearray(max(nbytes, self.chunk_rows * self.rowlen))
            view = memoryview(self._buf)[:nbytes]
            self.f.fh.seek(self.loc + a * self.rowlen)
            if self.f.fh.readinto(view) != nbytes:
                raise VerifyUsageError(f"{self.f.path}: truncated data in HDU {self.hdu.name}")
            rec = self._decode(view, b - a)
        return self._columns(rec, names, a, b)

    def take(self, idx, names):
        """Rows at sorted indices, read window by window (only windows holding wanted rows). No mmap:
        on kernels that map whole large folios per fault, a sparse gather maps most of the file."""
        if len(idx) == 0:
            return {n: np.empty(0, dtype=self.dtype(n)) for n in names}
        out = {n: [] for n in names}
        i = 0
        while i < len(idx):
            a = int(idx[i])
            b = min(self.nrows, a + self.chunk_rows)
            j = int(np.searchsorted(idx, b, side="left"))
            d = self.read_range(a, b, names)
            sel = np.asarray(idx[i:j]) - a
            for n in names:
                out[n].append(d[n][sel])
            i = j
        return {n: (v[0] if len(v) == 1 else np.concatenate(v)) for n, v in out.items()}

    def _columns(self, rec, names, a, b):
        out = {}
        for n in names:
            if n in self.vla:
                col = self.hdu.data[n]
                vals = col[a:b]
                out[n] = np.array([np.asarray(v) for v in vals] + [None], dtype=object)[:-1]
            else:
                out[n] = rec[n]
        return out


# ---------------------------------------------------------------------- headers

def _cards(header, ignore, drop_structural):
    values, commentary = {}, {"HISTORY": [], "COMMENT": []}
    for card in header.cards:
        k = card.keyword
        if k in ("HISTORY", "COMMENT"):
            # commentary text is the card image after the keyword: no value parsing (a third of the
            # comparison time on small files went to astropy parsing these cards)
            image = card.image
            commentary[k].append(image[8:].rstrip() if image[:8].rstrip() == k else str(card.value))
            continue
        if k == "" or k in ignore or any(fnmatch.fnmatchcase(k, p) for p in ignore if "*" in p or "?" in p):
            continue
        if drop_structural and STRUCTURAL.match(k):
            continue
        values.setdefault(k, []).append(card)    # parsed only when the two card images differ
    return values, commentary


def _value_equal(a, b, rtol, atol) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b:
            return True
        return abs(a - b) <= atol + rtol * abs(a)
    if isinstance(a, str) and isinstance(b, str):
        return a.rstrip() == b.rstrip()
    return a == b


def compare_headers(relpath, hname, hr, hc, rule: CompareRule, is_table: bool) -> Check:
    ignore = ignore_keywords(rule)
    vr, cr = _cards(hr, ignore, is_table)
    vc, cc = _cards(hc, ignore, is_table)
    problems = []
    masks = [re.compile(p) for p in rule.mask_patterns]

    def value(card):   # paths and dates in string keywords masked by the rule's patterns, never ignored
        v = card.value
        return _mask(v, masks) if masks and isinstance(v, str) else v
    for k in vr:
        if k not in vc:
            problems.append(f"{k} missing in the candidate")
            continue
        if [c.image for c in vr[k]] == [c.image for c in vc[k]]:
            continue                          # the same 80 characters: equal, nothing to parse
        a, b = [value(c) for c in vr[k]], [value(c) for c in vc[k]]
        if len(a) != len(b) or not all(_value_equal(x, y, rule.floats.rtol, rule.floats.atol) for x, y in zip(a, b)):
            problems.append(f"{k}: {_show(a)} vs {_show(b)}")
    for k in vc:
        if k not in vr:
            problems.append(f"{k} only in the candidate ({value(vc[k][0])!r})")
    for k in ("HISTORY", "COMMENT"):
        if k in ignore or rule.history == "ignore":
            continue
        # long text wraps over several cards, so a path may be cut in two: the masks see the joined text,
        # and where it wraps depends on the text's length (a blank at a card's end is lost): blanks do not count
        a, b = (re.sub(r"\s+", "", _commentary("".join(x[k]), rule, masks)) for x in (cr, cc))
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(f"{k} cards differ ({len(cr[k])} vs {len(cc[k])} lines; first difference at "
                            f"{a[max(0, at - 20):at + 40]!r} vs {b[max(0, at - 20):at + 40]!r})")
    th = {"ignored": sorted(ignore)}
    if problems:
        return Check(relpath, "header", FAIL, hname, "", f"header of {hname}: {len(problems)} keyword difference(s): "
                     + "; ".join(problems[:8]) + (" ..." if len(problems) > 8 else ""),
                     statistic=float(len(problems)), details={"differences": problems, "ignored": sorted(ignore)})
    return Check(relpath, "header", PASS, hname, "", f"{len(vr)} keyword(s) equal "
                 f"(ignoring {', '.join(sorted(ignore))})", details=th)


def _show(values) -> str:
    return repr(values[0]) if len(values) == 1 else repr(values)


# HISTORY/COMMENT by default: dates and times, and the folders of paths (the file name stays: another
# input file is a real difference), as the text comparator masks its lines
HISTORY_MASKS = [(re.compile(p), r) for p, r in (
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<TIMESTAMP>"),
    (r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\w* +(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\w* +\d{1,2} "
     r"+\d{2}:\d{2}:\d{2}(?: +[A-Z]{2,5})? +\d{4}", "<DATE>"),
    (r"\b\d{4}-\d{2}-\d{2}\b", "<DATE>"),
    (r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b", "<TIME>"),
    (r"(?<![\w.])(?:/[\w.+-]+)*/(?=[\w.+-])", "<DIR>/"),
)]


def _commentary(text: str, rule: CompareRule, masks) -> str:
    if rule.history == "masked":
        for rx, rep in HISTORY_MASKS:
            text = rx.sub(rep, text)
    return _mask(text, masks)


def _mask(s, masks):
    for m in masks:
        s = m.sub("<MASKED>", s)
    return s


def _column_attrs(header, names):
    out = {}
    for i, n in enumerate(names, start=1):
        out[n] = {a: header.get(f"{a}{i}") for a in COLUMN_ATTRS}
    return out


# ---------------------------------------------------------------------- the comparator

def compare_fits(ref_path: Path, cand_path: Path, relpath: str, rule: CompareRule, rules: List[CompareRule],
                 plots: Optional[dict] = None) -> List[Check]:
    fr = FitsFile(ref_path, relpath, "reference")
    try:
        fc = FitsFile(cand_path, relpath, "candidate")
    except Exception:
        fr.close()
        raise
    try:
        return _compare(fr, fc, relpath, rule, rules, plots)
    finally:
        fr.close()
        fc.close()


def _key(h, i):
    return (h.name.upper(), h.ver) if i > 0 else ("PRIMARY", 1)


def _compare(fr: FitsFile, fc: FitsFile, relpath, rule, rules, plots) -> List[Check]:
    table_cols = [c for h in fr.hdul if isinstance(h, fits.BinTableHDU) for c in h.columns.names]
    check_rule_columns(rule, rules, relpath, table_cols)
    checks: List[Check] = []
    rmap = {_key(h, i): i for i, h in enumerate(fr.hdul)}
    cmap = {_key(h, i): i for i, h in enumerate(fc.hdul)}
    missing = [k[0] for k in rmap if k not in cmap]
    extra = [k[0] for k in cmap if k not in rmap]
    if missing or extra:
        checks.append(Check(relpath, "hdus", FAIL, "", "", "HDUs differ: "
                            + (f"missing in the candidate: {', '.join(missing)}" if missing else "")
                            + ("; " if missing and extra else "")
                            + (f"only in the candidate: {', '.join(extra)}" if extra else "")))
    else:
        checks.append(Check(relpath, "hdus", PASS, "", "", f"{len(rmap)} HDU(s): "
                            + ", ".join(k[0] for k in rmap)))
    for key, ir in rmap.items():
        if key not in cmap:
            continue
        ic = cmap[key]
        hr, hc = fr.hdul[ir], fc.hdul[ic]
        hname = key[0] if key[1] == 1 else f"{key[0]}[{key[1]}]"
        is_table = isinstance(hr, fits.BinTableHDU)
        if type(hr) is not type(hc):
            checks.append(Check(relpath, "hdu-type", FAIL, hname, "", f"{hname}: {type(hr).__name__} in the "
                                f"reference, {type(hc).__name__} in the candidate"))
            continue
        checks.append(compare_headers(relpath, hname, hr.header, hc.header, rule, is_table or
                                      isinstance(hr, (fits.ImageHDU, fits.PrimaryHDU))))
        nr, nc = _data_bytes(hr), _data_bytes(hc)
        same_bytes = nr == nc and (nr == 0 or identical_ranges(fr.fh, fr.infos[ir]["datLoc"], fc.fh,
                                                               fc.infos[ic]["datLoc"], nr))
        if is_table:
            checks.extend(_compare_table(fr, fc, ir, ic, relpath, hname, rule, same_bytes, plots))
        elif isinstance(hr, fits.TableHDU):
            checks.extend(_compare_ascii_table(hr, hc, relpath, hname, rule, same_bytes))
        elif hr.header.get("NAXIS", 0) > 0 or hc.header.get("NAXIS", 0) > 0:
            checks.append(_compare_image(hr, hc, relpath, hname, rule, same_bytes))
    return checks


def _columns_check(relpath, hname, hr, hc, ref_names, cand_names) -> Check:
    problems = []
    missing = [n for n in ref_names if n not in cand_names]
    extra = [n for n in cand_names if n not in ref_names]
    if missing:
        problems.append(f"missing in the candidate: {', '.join(missing)}")
    if extra:
        problems.append(f"only in the candidate: {', '.join(extra)}")
    ar, ac = _column_attrs(hr, ref_names), _column_attrs(hc, cand_names)
    for n in ref_names:
        if n in ac:
            diffs = [f"{a} {ar[n][a]!r} vs {ac[n][a]!r}" for a in COLUMN_ATTRS if ar[n][a] != ac[n][a]]
            if diffs:
                problems.append(f"{n}: {', '.join(diffs)}")
    if problems:
        return Check(relpath, "columns", FAIL, hname, ",".join(missing + extra),
                     f"columns of {hname} differ: " + "; ".join(problems), details={"missing": missing,
                                                                                   "extra": extra})
    return Check(relpath, "columns", PASS, hname, "", f"{len(ref_names)} columns with the same definitions")


def _compare_table(fr, fc, ir, ic, relpath, hname, rule, same_bytes, plots) -> List[Check]:
    tr, tc = FitsTable(fr, ir), FitsTable(fc, ic)
    checks = [_columns_check(relpath, hname, fr.hdul[ir].header, fc.hdul[ic].header, tr.names, tc.names)]
    common = [n for n in tr.names if n in tc.names]
    if same_bytes and tr.names == tc.names:
        checks.append(Check(relpath, "rows", PASS, hname, "", f"{tr.nrows} rows; data section byte-identical"))
        checks.extend(Check(relpath, "bytes", PASS, hname, n, f"{n}: identical (raw data bytes)") for n in common)
        return checks
    tcmp = TableCompare(relpath, hname, tr, tc, rule, common, plots)
    return checks + tcmp.run()


def _compare_ascii_table(hr, hc, relpath, hname, rule, same_bytes) -> List[Check]:
    if same_bytes:
        return [Check(relpath, "bytes", PASS, hname, "", "ASCII table data byte-identical")]
    checks = []
    if len(hr.data) != len(hc.data):
        return [Check(relpath, "rows", FAIL, hname, "", f"row count differs: {len(hr.data)} vs {len(hc.data)}")]
    for n in hr.columns.names:
        if n not in hc.columns.names:
            checks.append(Check(relpath, "columns", FAIL, hname, n, f"{n} missing in the candidate"))
            continue
        a, b = np.asarray(hr.data[n]), np.asarray(hc.data[n])
        floaty = a.dtype.kind == "f"
        cc = ColumnCompare(relpath, hname, n, "tolerance" if floaty else "exact",
                           rule.floats.rtol if floaty else 0, rule.floats.atol if floaty else 0)
        cc.feed(a, b, 0)
        checks.append(cc.check())
    return checks


def _compare_image(hr, hc, relpath, hname, rule, same_bytes) -> Check:
    if same_bytes:
        return Check(relpath, "bytes", PASS, hname, "data", "image data byte-identical")
    if hr.header.get("BITPIX") != hc.header.get("BITPIX"):
        return Check(relpath, "image", FAIL, hname, "data", f"image type differs: BITPIX {hr.header.get('BITPIX')} "
                     f"vs {hc.header.get('BITPIX')}")
    a, b = hr.data, hc.data
    if a is None or b is None or a.shape != b.shape:
        return Check(relpath, "image", FAIL, hname, "data", f"image shape differs: "
                     f"{None if a is None else a.shape} vs {None if b is None else b.shape}")
    floaty = a.dtype.kind == "f" or b.dtype.kind == "f"
    cc = ColumnCompare(relpath, hname, "data", "tolerance" if floaty else "exact",
                       rule.floats.rtol if floaty else 0, rule.floats.atol if floaty else 0)
    step = max(1, (CHUNK_BYTES // max(a[0:1].nbytes, 1))) if a.ndim > 1 else 1 << 20
    for i in range(0, a.shape[0], step):
        cc.feed(np.asarray(a[i:i + step]), np.asarray(b[i:i + step]), i)
    c = cc.check()
    c.test = "image"
    return c
