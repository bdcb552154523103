#!/usr/bin/env python
"""Benchmark of `relman compare` on large FT1 files against astropy's FITSDiff (not run by the tests).

Makes a reference FT1 file of N events by resampling the 3FHL events (rows drawn with replacement,
GTI copied) and a candidate whose float columns carry relative noise 1e-7, in a temp folder under /tmp
(never in the repository). Then, each side in its own subprocess (peak memory = ru_maxrss of that
process):
  - relman: exact on integer and bit columns, rtol 1e-5 on floats, plus KS on ENERGY, THETA,
    ZENITH_ANGLE (those three also row by row at rtol 1e-5);
  - astropy FITSDiff(rtol=1e-5) on the same pair;
  - relman on an identical pair (a byte copy): the shortcut, against the time to read both files.
Memory flatness: the relman comparison at every size given (default 1M, 3M, 10M events).

usage: python benchmarks/verify_fits.py [--sizes 1000000,3000000,10000000] [--fitsdiff-at 3000000]
                                        [--workdir /tmp/relman-bench] [--keep]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from startup import compile_relman

ROOT = Path(__file__).resolve().parent.parent
SOURCE = (ROOT.parent / "shared" / "data" / "fermi" / "ft1" / "3fhl-gc-events.fits.gz").resolve()
CHUNK = 200_000
IGNORE = ["DATE", "CREATOR", "DATASUM", "CHECKSUM", "FILENAME"]


# ---------------------------------------------------------------------- making the files

def make_pair(n: int, folder: Path, seed: int = 42, shuffled: bool = False):
    """reference and candidate FT1 files of n events, written in chunks (memory independent of n).
    shuffled: EVENT_ID made unique (the row number) and the candidate's rows in a random order."""
    from astropy.io import fits
    raw = gzip.open(SOURCE).read()
    with fits.open(SOURCE) as h:
        ev, gti = h["EVENTS"], h["GTI"]
        dtype = ev.columns.dtype.newbyteorder(">")
        n0 = ev.header["NAXIS2"]
        ev_info, gti_info = ev.fileinfo(), gti.fileinfo()
        header = ev.header.copy()
    header["NAXIS2"] = n
    for k in ("CHECKSUM", "DATASUM"):
        header.remove(k, ignore_missing=True)
    rows = np.frombuffer(raw, dtype=dtype, count=n0, offset=ev_info["datLoc"])
    floats = [name for name in dtype.names if dtype.fields[name][0].kind == "f"]
    rng = np.random.default_rng(seed)
    tag = "-shuffled" if shuffled else ""
    ref_path, cand_path = folder / f"ref-{n}{tag}.fits", folder / f"cand-{n}{tag}.fits"
    if shuffled:
        source_rows = rng.integers(0, n0, n)
        order = rng.permutation(n)
    with open(ref_path, "wb") as fr, open(cand_path, "wb") as fc:
        head = raw[:ev_info["hdrLoc"]] + header.tostring().encode("ascii")
        fr.write(head)
        fc.write(head)
        for a in range(0, n, CHUNK):
            m = min(CHUNK, n - a)
            if shuffled:
                rec = rows[source_rows[a:a + m]]
                rec["EVENT_ID"] = np.arange(a, a + m)
                fr.write(rec.tobytes())
                ids = order[a:a + m]
                rec = rows[source_rows[ids]]
                rec["EVENT_ID"] = ids
            else:
                rec = rows[rng.integers(0, n0, m)]
                fr.write(rec.tobytes())
            for name in floats:
                v = rec[name].astype(np.float64)
                rec[name] = v * (1.0 + 1e-7 * rng.standard_normal(v.shape))
            fc.write(rec.tobytes())
        pad = (-n * dtype.itemsize) % 2880
        tail = b"\0" * pad + raw[gti_info["hdrLoc"]:gti_info["datLoc"] + gti_info["datSpan"]]
        fr.write(tail)
        fc.write(tail)
    return ref_path, cand_path


# ---------------------------------------------------------------------- children (one measurement each)

def child(kind: str, ref: str, cand: str) -> dict:
    """One measurement; imports are timed apart from the work."""
    t0 = time.perf_counter()
    if kind in ("relman", "relman-keyed"):
        from release_manager.spec.model import CompareRule
        from release_manager.verify.compare import compare_paths
        import release_manager.verify.fits_cmp  # noqa: F401  (loaded lazily otherwise)
        import release_manager.verify.distributions  # noqa: F401
    elif kind == "fitsdiff":
        from astropy.io.fits import FITSDiff
    imports = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = {"kind": kind, "import_seconds": imports}
    if kind in ("relman", "relman-keyed"):
        ks = {"test": "ks", "rtol": 1e-5}
        rule = CompareRule(pattern="*", comparator="fits", floats={"rtol": 1e-5, "atol": 0.0},
                           columns={"ENERGY": ks, "THETA": ks, "ZENITH_ANGLE": ks},
                           key_columns=["RUN_ID", "EVENT_ID"] if kind == "relman-keyed" else [])
        o = compare_paths(Path(ref), Path(cand), [rule], plots=False)
        out.update(verdict=o.verdict, counts=o.counts(), checks=len(o.checks),
                   ks={c.column: [c.statistic, c.pvalue, c.details.get("n_ref")] for c in o.checks if c.test == "ks"},
                   max_rel={c.column: c.details.get("max_rel_diff") for c in o.checks
                            if c.test == "tolerance" and c.column in ("ENERGY", "RA", "TIME")},
                   first_check=o.checks[0].message)
    elif kind == "fitsdiff":
        d = FITSDiff(ref, cand, rtol=1e-5, ignore_keywords=IGNORE)
        out.update(identical=d.identical)
    elif kind == "read":
        for p in (ref, cand):
            with open(p, "rb") as f:
                while f.read(8 << 20):
                    pass
    out["seconds"] = time.perf_counter() - t0
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def measure(kind: str, ref: Path, cand: Path, best_of: int = 1) -> dict:
    """A fresh subprocess per measurement; with best_of > 1, the fastest of that many (cheap ones)."""
    if best_of > 1:
        return min((measure(kind, ref, cand) for _ in range(best_of)), key=lambda m: m["seconds"])
    r = subprocess.run([sys.executable, __file__, "--child", kind, str(ref), str(cand)], capture_output=True,
                       text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def whole_command(argv) -> dict:
    """A command timed from outside, interpreter start included; peak memory of that one command
    (a fresh parent per measurement, so RUSAGE_CHILDREN holds only it)."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, rc)")
    out = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, cwd=ROOT)
    wall, mb, rc = out.stdout.split()
    return {"seconds": float(wall), "maxrss_mb": float(mb), "exit": int(rc)}


# ---------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3, metavar=("KIND", "REF", "CAND"))
    ap.add_argument("--sizes", default="1000000,3000000,10000000")
    ap.add_argument("--fitsdiff-at", type=int, default=3_000_000)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--keyed-at", type=int, default=3_000_000,
                    help="also time key matching (RUN_ID+EVENT_ID) on a shuffled pair of this size (0: no)")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child), default=str))
        return
    compile_relman()  # as an installed relman has them (benchmarks/startup.py)
    sizes = [int(float(s)) for s in a.sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="relman-bench-", dir=a.workdir or "/tmp"))
    print(f"files in {folder}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          "(other work on the machine inflates every figure)")
    rows = []
    try:
        for n in sizes:
            t0 = time.perf_counter()
            ref, cand = make_pair(n, folder)
            size = ref.stat().st_size
            print(f"\n== {n:,} events: {size / 1e6:.0f} MB per file (made in {time.perf_counter() - t0:.1f} s), "
                  f"load average {os.getloadavg()[0]:.1f}")
            read = measure("read", ref, cand, best_of=3)
            rel = measure("relman", ref, cand)
            print(f"read both files            {read['seconds']:7.2f} s  ({2 * size / 1e6 / read['seconds']:.0f} MB/s)")
            print(f"relman compare             {rel['seconds']:7.2f} s  peak {rel['maxrss_mb']:6.0f} MB  "
                  f"verdict {rel['verdict']} {rel['counts']}")
            print(f"   KS (D, p, n per side): {rel['ks']}")
            print(f"   max rel diff: {rel['max_rel']}")
            row = {"events": n, "mb": size / 1e6, "read_s": read["seconds"], "relman_s": rel["seconds"],
                   "relman_mb": rel["maxrss_mb"]}
            if n == a.fitsdiff_at:
                fd = measure("fitsdiff", ref, cand)
                print(f"astropy FITSDiff(rtol=1e-5) {fd['seconds']:7.2f} s  peak {fd['maxrss_mb']:6.0f} MB  "
                      f"identical={fd['identical']}")
                print(f"   speed-up relman vs FITSDiff: {fd['seconds'] / rel['seconds']:.2f}x")
                row.update(fitsdiff_s=fd["seconds"], fitsdiff_mb=fd["maxrss_mb"])
                # whole commands, as a user runs them: `relman compare` with its default rules (floats
                # within 4 ULPs) against astropy's `fitsdiff` script at rtol 1e-5
                rc = whole_command([sys.executable, "-m", "release_manager", "compare", ref, cand])
                fc = whole_command(["fitsdiff", "-r", "1e-5", "-k", ",".join(IGNORE), ref, cand])
                print(f"whole commands: relman compare {rc['seconds']:.2f} s, {rc['maxrss_mb']:.0f} MB (exit "
                      f"{rc['exit']}); fitsdiff {fc['seconds']:.2f} s, {fc['maxrss_mb']:.0f} MB (exit {fc['exit']}): "
                      f"{fc['seconds'] / rc['seconds']:.2f}x faster (target >= 2x), "
                      f"{rc['maxrss_mb'] / fc['maxrss_mb']:.0%} of its memory (target <= 25%)")
                row.update(cmd_relman_s=rc["seconds"], cmd_relman_mb=rc["maxrss_mb"], cmd_fitsdiff_s=fc["seconds"],
                           cmd_fitsdiff_mb=fc["maxrss_mb"])
            same = folder / f"same-{n}.fits"
            shutil.copyfile(ref, same)
            read_same = measure("read", ref, same, best_of=3)
            ident = measure("relman", ref, same, best_of=3)
            print(f"identical pair (shortcut)  {ident['seconds']:7.2f} s  peak {ident['maxrss_mb']:6.0f} MB  "
                  f"({ident['first_check']}); reading the pair takes {read_same['seconds']:.2f} s (best of 3 each)")
            row.update(identical_s=ident["seconds"], identical_mb=ident["maxrss_mb"])
            rows.append(row)
            for p in (ref, cand, same):
                p.unlink()
        if a.keyed_at:
            ref, cand = make_pair(a.keyed_at, folder, shuffled=True)
            kd = measure("relman-keyed", ref, cand)
            print(f"\n== key matching, {a.keyed_at:,} events, candidate rows shuffled, EVENT_ID unique")
            print(f"relman compare (keyed)     {kd['seconds']:7.2f} s  peak {kd['maxrss_mb']:6.0f} MB  "
                  f"verdict {kd['verdict']} {kd['counts']}")
            for p in (ref, cand):
                p.unlink()
        print("\n== summary")
        print(f"{'events':>11} {'MB/file':>8} {'read s':>7} {'relman s':>9} {'relman MB':>10} {'FITSDiff s':>10} "
              f"{'FITSDiff MB':>11} {'ident s':>8}")
        for r in rows:
            print(f"{r['events']:>11,} {r['mb']:>8.0f} {r['read_s']:>7.2f} {r['relman_s']:>9.2f} {r['relman_mb']:>10.0f} "
                  f"{r.get('fitsdiff_s', float('nan')):>10.2f} {r.get('fitsdiff_mb', float('nan')):>11.0f} "
                  f"{r['identical_s']:>8.2f}")
        mem = [r["relman_mb"] for r in rows]
        if len(mem) > 1:
            print(f"relman peak memory from {rows[0]['events']:,} to {rows[-1]['events']:,} events: "
                  f"{mem[0]:.0f} -> {mem[-1]:.0f} MB ({mem[-1] / mem[0]:.2f}x for {rows[-1]['events'] / rows[0]['events']:.0f}x the data)")
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
