#!/usr/bin/env python3
"""L1 makeFT1 benchmarks, each beside its baseline; prints a table.

1. cold build of the runtime image (no layer cache)              vs  the ScienceTools cold build (same way);
   L1 is built on ScienceTools' images (extends): its cold build compiles the L1 packages only, in
   ScienceTools' full image (found by its key), and adds its layers to ScienceTools' runtime image
2. rebuild after a change in fitsGen (branch l1-fitsgen-change)  vs  that cold build; and ScienceTools'
   one-package rebuild (leaf-change) vs its cold build
3. makeFT1 run time, in the runtime image (any UID, read-only root) vs the host build: median of 5
4. bytes a node pulls for the makeFT1 runtime image when ScienceTools' runtime image is cached:
   compressed layer sizes from the registry manifests, minus the layers (digests) both share

Needs the local stack and the host build packages (`.ci/run` installs them). Works in a throw-away data
folder; pushes to the settings' registry. Usage: python3 benchmarks/l1_build.py [--no-sciencetools] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from st_common import ROOT, sciencetools_setup, timed

from release_manager import engine, fermitools, l1
from release_manager.build import Builder
from release_manager.checks import FARM_RUN
from release_manager.hostbuild import host_build
from release_manager.registry import Registry
from release_manager.tags import registry_path
from release_manager.verify.runner import host_environment

MERIT = ROOT.parent / "shared" / "data" / "fermi" / "merit"
EVT = "/opt/fermitools/refdata/fermi/evtClassDefs"


def makeft1_argv(prefix: str, merit: str, out: str):
    evt = f"{prefix}/refdata/fermi/evtClassDefs"
    return [f"{prefix}/bin/makeFT1" if prefix != "/opt/fermitools" else "makeFT1", f"rootFile={merit}",
            f"fitsFile={out}", f"TCuts={evt}/data/pass8.0_Transient_cuts_L1",
            f"xml_classifier={evt}/xml/EvtClassDefs_P8R0.xml", "evtclsmap=FT1EventClass", "evttypmap=none",
            f"dict_file={evt}/data/pass8_FT1variables", "tstart=0", "tstop=17", "clobber=yes"]


def run_times(api, image: str, host_prefix: Path, spec, n: int = 5):
    """(image seconds, host seconds): medians of n runs of makeFT1 on the gamma merit file. The image's
    figure is the container's whole life (create, start, run, exit), as a batch slot sees it."""
    out = Path(tempfile.mkdtemp(prefix="relman-l1-run-"))
    os.chmod(out, 0o777)
    binds = {str(MERIT): {"bind": "/merit", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}}
    img, host = [], []
    for i in range(n):
        t0 = time.perf_counter()
        rc, log = engine.run(api, image, makeft1_argv("/opt/fermitools", "/merit/gamma_5_gev_normal-merit.root",
                                                      f"/out/i{i}.fits"), binds=binds, workdir="/out", **FARM_RUN)
        img.append(time.perf_counter() - t0)
        assert rc == 0, log[-1500:]
        env = host_environment(spec, host_prefix, out / f"user{i}")
        t0 = time.perf_counter()
        r = subprocess.run(makeft1_argv(str(host_prefix), str(MERIT / "gamma_5_gev_normal-merit.root"),
                                        str(out / f"h{i}.fits")), env=env, cwd=out, capture_output=True, text=True)
        host.append(time.perf_counter() - t0)
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    shutil.rmtree(out, ignore_errors=True)
    return statistics.median(img), statistics.median(host)


def layers(reg: Registry, repository: str, tag: str):
    raw, _, _ = reg.get_manifest(registry_path(repository), tag)
    return [(x["digest"], x["size"]) for x in json.loads(raw)["layers"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-sciencetools", action="store_true", help="skip ScienceTools' cold build and rebuild")
    ap.add_argument("--no-cold", action="store_true", help="skip both cold builds (the fitsGen rebuild, run times "
                                                            "and pull bytes only: a busy machine)")
    ap.add_argument("--keep", action="store_true", help="keep the data folder (printed)")
    args = ap.parse_args()
    data, settings, specs = sciencetools_setup("relman-bench-l1-")
    quiet = lambda m: None  # noqa: E731
    builder = Builder(settings, specs, echo=quiet)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores", flush=True)
    # both runtime images built the usual way (layer cache on) and pushed: what a registry holds
    builder.build("sciencetools", fermitools.FIXTURE_TAG, ["runtime"], push=True)
    l1_res = builder.build("l1-makeft1", l1.L1_TAG, ["runtime"], push=True)
    reg = Registry(settings.registry)
    repo_l1 = l1_res[0].repository
    repo_st = repo_l1.rsplit("/", 1)[0] + "/sciencetools"
    l1_layers = layers(reg, repo_l1, f"{l1.L1_TAG}-runtime")
    st_layers = layers(reg, repo_st, f"{fermitools.FIXTURE_TAG}-runtime")
    st_digests = {d for d, _ in st_layers}
    total = sum(s for _, s in l1_layers)
    shared = sum(s for d, s in l1_layers if d in st_digests)
    host_s, host_prefix = timed(lambda: host_build(builder, "l1-makeft1", l1.L1_TAG, force=True, echo=quiet))
    print(f"L1 host build: {host_s:.1f} s", flush=True)
    api = engine.connect(settings)
    img_run, host_run = run_times(api, l1_res[0].image_id, host_prefix, specs.get("l1-makeft1").spec)
    print(f"makeFT1 run: image {img_run:.2f} s, host {host_run:.2f} s", flush=True)
    # cold builds last, not pushed: the registry keeps the images measured above
    st = {}
    if not (args.no_sciencetools or args.no_cold):
        st["cold"], _ = timed(lambda: builder.build("sciencetools", fermitools.FIXTURE_TAG, ["runtime"],
                                                    force=True, no_cache=True))
        print(f"ScienceTools cold build (runtime, no cache): {st['cold']:.1f} s", flush=True)
        st["leaf"], _ = timed(lambda: builder.build("sciencetools", "leaf-change", ["runtime"], force=True))
        print(f"ScienceTools leaf-change rebuild: {st['leaf']:.1f} s", flush=True)
    cold_s, cold = None, None
    if not args.no_cold:
        cold_s, cold = timed(lambda: builder.build("l1-makeft1", l1.L1_TAG, ["runtime"], force=True,
                                                   no_cache=True))
        print(f"L1 makeFT1 cold build (runtime, no cache; on ScienceTools' images): {cold_s:.1f} s", flush=True)
    fits_s, fits = timed(lambda: builder.build("l1-makeft1", l1.FITSGEN_BRANCH, ["runtime"], force=True))
    print(f"L1 rebuild after a fitsGen change: {fits_s:.1f} s", flush=True)
    print()
    print(f"{'measure':52} {'value':>10} {'baseline':>10} {'ratio':>7}")
    if st:
        print(f"{'cold build: L1 (on ST images) / ScienceTools (s)':52} {cold_s:10.1f} {st['cold']:10.1f} "
              f"{cold_s / st['cold']:7.2f}")
        print(f"{'one-package rebuild: ScienceTools leaf / its cold (s)':52} {st['leaf']:10.1f} {st['cold']:10.1f} "
              f"{st['leaf'] / st['cold']:7.2f}")
    if cold_s:
        print(f"{'L1 fitsGen-change rebuild / L1 cold build (s)':52} {fits_s:10.1f} {cold_s:10.1f} "
              f"{fits_s / cold_s:7.2f}")
        print(f"{'L1 image cold build / L1 host build (s)':52} {cold_s:10.1f} {host_s:10.1f} {cold_s / host_s:7.2f}")
    else:
        print(f"{'L1 fitsGen-change rebuild / L1 host build (s)':52} {fits_s:10.1f} {host_s:10.1f} "
              f"{fits_s / host_s:7.2f}")
    print(f"{'makeFT1 run: image (container life) / host (s)':52} {img_run:10.2f} {host_run:10.2f} "
          f"{img_run / host_run:7.2f}")
    print(f"{'pull with ScienceTools runtime cached (MB, gzip)':52} {(total - shared) / 1e6:10.1f} {total / 1e6:10.1f} "
          f"{(total - shared) / total:7.2f}")
    print(f"shared layers: {sum(1 for d, _ in l1_layers if d in st_digests)} of {len(l1_layers)} "
          f"({shared / 1e6:.1f} MB compressed); runtime image {l1_res[0].size / 1e6:.0f} MB uncompressed")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    assert fits[0].status == "built" and (cold is None or cold[0].status == "built")
    if args.keep:
        print(f"data folder: {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
