#!/usr/bin/env python3
"""What the debug and full variants of the L1 makeFT1 image add to its build, as the engine test builds
them: a cold build (no layer cache) of the runtime image alone beside a cold build of runtime, debug and
full pushed to the registry (what tests/test_l1_engine.py's fixture does on a fresh machine, without its
overlapped host build). Prints both, their ratio and the images' sizes.

Needs the local stack. Pushes the fixture tags (v2.4.0-l1-runtime/-debug/-full) to the settings' registry.
Usage: python3 benchmarks/l1_variants.py
"""
from __future__ import annotations

import os
import shutil

from st_common import sciencetools_setup, timed

from release_manager import l1
from release_manager.build import Builder


def main():
    data, settings, specs = sciencetools_setup("relman-bench-l1v-")
    builder = Builder(settings, specs, echo=lambda m: None)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores", flush=True)
    rt_s, _ = timed(lambda: builder.build("l1-makeft1", l1.L1_TAG, ["runtime"], force=True, no_cache=True))
    print(f"L1 cold build, runtime only (not pushed): {rt_s:.1f} s", flush=True)
    all_s, res = timed(lambda: builder.build("l1-makeft1", l1.L1_TAG, ["runtime", "debug", "full"], force=True,
                                             no_cache=True, push=True))
    print(f"L1 cold build, runtime + debug + full, pushed: {all_s:.1f} s", flush=True)
    print()
    print(f"{'measure':52} {'value':>10} {'baseline':>10} {'ratio':>7}")
    print(f"{'cold: runtime+debug+full pushed / runtime only (s)':52} {all_s:10.1f} {rt_s:10.1f} {all_s / rt_s:7.2f}")
    print("sizes: " + ", ".join(f"{r.target} {r.size / 1e6:.0f} MB" for r in res))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    assert all(r.status == "built" and r.pushed for r in res), [(r.target, r.status) for r in res]
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
