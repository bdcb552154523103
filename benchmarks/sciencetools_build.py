#!/usr/bin/env python3
"""ScienceTools (the Fermitools subset) build benchmarks, each beside its baseline; prints a table.

1. cold build of the runtime image (no layer cache)   vs  the host build of the same commit (same recipe)
2. rebuild after a one-package change (dataSubselector, leaf-change branch)   vs  that cold build
3. decision and skip of an unchanged umbrella (14 submodules), runtime + debug + full: median of 3

Targets (issue 10): image/host <= 1.3; leaf rebuild <= 20 % of the cold build; skip <= 0.5 s.
Needs the local stack (scripts/local-stack up) and the Debian build packages on the host (the host build
says which are missing). Works in a throw-away data folder under /tmp; the mirrors are made there.
Usage: python3 benchmarks/sciencetools_build.py [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics

from st_common import sciencetools_setup, timed

from release_manager import fermitools
from release_manager.build import Builder
from release_manager.hostbuild import host_build


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="keep the data folder (printed)")
    args = ap.parse_args()
    data, settings, specs = sciencetools_setup("relman-bench-st-")
    quiet = lambda m: None  # noqa: E731
    builder = Builder(settings, specs, echo=quiet)
    tag = fermitools.FIXTURE_TAG
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores", flush=True)

    host_s, _ = timed(lambda: host_build(builder, "sciencetools", tag, force=True, echo=quiet))
    print(f"host build: {host_s:.1f} s", flush=True)
    cold_s, cold = timed(lambda: builder.build("sciencetools", tag, ["runtime"], force=True, no_cache=True))
    print(f"cold image build (runtime, no cache): {cold_s:.1f} s", flush=True)
    leaf_s, leaf = timed(lambda: builder.build("sciencetools", "leaf-change", ["runtime"], force=True))
    print(f"leaf-change rebuild: {leaf_s:.1f} s", flush=True)
    builder.build("sciencetools", tag, ["runtime", "debug", "full"])   # every variant exists: the next runs skip
    skips = []
    for _ in range(3):
        s, res = timed(lambda: Builder(settings, specs, echo=quiet).build("sciencetools", tag,
                                                                          ["runtime", "debug", "full"]))
        assert all(r.status == "skipped" for r in res), [r.status for r in res]
        skips.append(s)
    skip_s = statistics.median(skips)
    rt = cold[0].size
    print()
    print(f"{'measure':48} {'value':>10} {'baseline':>10} {'ratio':>7}  target")
    print(f"{'cold build image / host build (s)':48} {cold_s:10.1f} {host_s:10.1f} {cold_s / host_s:7.2f}  <= 1.3")
    print(f"{'leaf-change rebuild / cold build (s)':48} {leaf_s:10.1f} {cold_s:10.1f} {leaf_s / cold_s:7.2f}  <= 0.20")
    print(f"{'unchanged: decide and skip 3 variants (s)':48} {skip_s:10.2f} {'':>10} {'':>7}  <= 0.5")
    print(f"{'runtime image size (MB)':48} {rt / 1e6:10.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    assert leaf[0].status == "built"
    if args.keep:
        print(f"data folder: {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
