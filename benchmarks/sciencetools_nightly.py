#!/usr/bin/env python3
"""ScienceTools nightly benchmarks (issue 11); prints two tables.

1. Verification of the whole workload on the runtime image: each step's time in the image and on the
   host build, and the comparison's time beside the workload's (target: comparison <= 10 % of the
   workload's run time).
2. First nightly, no-change nightly (target <= 0.5 s) and the nightly after a one-package change
   (leaf-change pin), side by side.

Needs the local stack and the Debian build packages (the host build says which are missing). Works in a
throw-away data folder under /tmp with its own mirrors and SQLite database; the engine's layer cache is
shared, so a machine that built ScienceTools before runs the first nightly faster than a fresh one.
Usage: python3 benchmarks/sciencetools_nightly.py [--keep]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import git
from st_common import sciencetools_setup, timed

from release_manager import fermitools
from release_manager.db import migrate
from release_manager.db.connection import for_settings
from release_manager.workflows.common import Context
from release_manager.workflows.nightly import run_nightly


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    data, settings, specs = sciencetools_setup("relman-bench-stn-")
    migrate.upgrade(for_settings(settings))
    lines = []
    ctx = Context(settings, specs, echo=lines.append)
    umbrella = git.Repo(fermitools.mirror_root(data) / "ScienceTools.git")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores", flush=True)

    first_s, first = timed(lambda: run_nightly(ctx, "sciencetools", dt.date(2026, 11, 1)))
    assert first["status"] == "passed", first.get("message")
    print(f"first nightly: {first_s:.1f} s (host reference build included)", flush=True)
    skips = []
    for i in range(3):
        s, rep = timed(lambda: run_nightly(Context(settings, specs, echo=lambda m: None), "sciencetools",
                                           dt.date(2026, 11, 2)))
        assert rep["status"] == "skipped", rep.get("message")
        skips.append(s)
    umbrella.git.update_ref("refs/heads/master", umbrella.commit("leaf-change").hexsha)
    leaf_s, leaf = timed(lambda: run_nightly(ctx, "sciencetools", dt.date(2026, 11, 3)))
    assert leaf["status"] == "passed", leaf.get("message")

    # table 1: the runtime image's verification of the first nightly, step by step
    runtime = next(i for i in first["images"] if i["variant"] == "runtime")
    summary = json.loads(Path(runtime["verify_report"]).read_text())
    steps = summary["steps"]
    print()
    print(f"{'step':14} {'image s':>9} {'host s':>9}  (image: container process; host: process)")
    image_total = host_total = 0.0
    for st in [s for s in steps if s["side"] == "image"]:
        host = next((h for h in steps if h["side"] == "reference" and h["step"] == st["step"]), None)
        image_total += st["wall_seconds"]
        host_total += host["wall_seconds"] if host else 0.0
        print(f"{st['step']:14} {st['wall_seconds']:9.2f} {host['wall_seconds'] if host else float('nan'):9.2f}")
    compare_s = _compare_seconds(Path(runtime["verify_report"]).parent, specs)
    workload = image_total + host_total
    print(f"{'workload':14} {image_total:9.2f} {host_total:9.2f}")
    print(f"comparison of the {len({r['file'] for r in summary['rows'] if r['file'].endswith('.fits')})} products: {compare_s:.3f} s = "
          f"{compare_s / workload:.1%} of the workload's {workload:.2f} s (target <= 10 %)")

    print()
    print(f"{'nightly':34} {'seconds':>9}  target")
    print(f"{'first (build, host ref, verify)':34} {first_s:9.1f}")
    print(f"{'no change (median of 3)':34} {statistics.median(skips):9.2f}  <= 0.5")
    print(f"{'one-package change (leaf-change)':34} {leaf_s:9.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.keep:
        print(f"data folder: {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)


def _compare_seconds(work: Path, specs) -> float:
    """The comparison alone, rerun on the outputs the verification left in its folder (best of 3)."""
    from release_manager.verify.compare import compare_paths
    from release_manager.verify.result import Outcome
    ver = specs.get("sciencetools").spec.verification
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        compare_paths(work / "outputs" / "reference", work / "outputs" / "image", ver.rules, ver.known_differences,
                      outputs=ver.outputs, plots=False, outcome=Outcome(title="bench", reference="", candidate=""),
                      echo=lambda m: None)
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    main()
