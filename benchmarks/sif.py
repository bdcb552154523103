#!/usr/bin/env python
"""Benchmark of SIF builds (not run by the tests): for each pushed image given, `relman sif` (real Apptainer in
its tool image, from the registry by digest) N times; prints the build time and the SIF's size side by side with
the Docker image's size (unpacked, as `docker images` shows it) and its compressed layers (what a pull moves),
then the start of one command: `apptainer exec --containall` from the SIF (inside the tool container, and
Apptainer's own time as reported by it) against `docker run --rm` of the image.

usage: python benchmarks/sif.py [--package evtselect] [--image v1.1.0-runtime ...] [--repeat 2]
Needs the local stack, the tool image (scripts/farm/apptainer-image) and the image pushed. SIFs go to a
temporary folder; nothing is recorded in a release database.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from release_manager import engine
from release_manager.apptainer import Apptainer, Bind
from release_manager.config import load_settings
from release_manager.sif import build_sif
from release_manager.spec import load_specs


def mb(n):
    return f"{n / 1e6:8.1f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--package", default="evtselect")
    ap.add_argument("--image", action="append", help="tag in the package's repository (repeatable)")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    images = a.image or ["v1.1.0-runtime"]
    settings = load_settings()
    specs = load_specs(settings.specs_dir)
    api = engine.connect(settings)
    app = Apptainer(api, settings.apptainer_image)
    print(f"apptainer {app.version()} in {settings.apptainer_image}; load average "
          f"{open('/proc/loadavg').read().split()[0]} on {subprocess.check_output(['nproc']).decode().strip()} cores")
    with tempfile.TemporaryDirectory(prefix="relman-sif-bench-", dir="/var/tmp") as tmp:
        for image in images:
            times, res = [], None
            for i in range(a.repeat):
                res = build_sif(settings, specs, a.package, image, out=Path(tmp) / f"{i}.sif", api=api, record=False)
                times.append(res.build_seconds)
            ref = f"{settings.registry}/{settings.namespace}/{a.package}@{res.image_digest}"
            api.pull(ref.rsplit("@", 1)[0], tag=res.image_digest)
            docker_size = api.inspect_image(ref)["Size"]
            sif = Path(res.path)
            # start of one command: the SIF's (inside the tool container) and the Docker image's
            t0 = time.monotonic()
            r = app.run(["sh", "-c", 's=$(date +%s.%N); apptainer exec --containall "$1" true; '
                         'e=$(date +%s.%N); echo "inner $s $e"', "sh", str(sif)], binds=[Bind(sif)], uid=1000, gid=1000)
            outer_apt = time.monotonic() - t0
            s, e = [float(x) for x in next(ln for ln in r.output.splitlines() if ln.startswith("inner")).split()[1:]]
            t0 = time.monotonic()
            rc, _ = engine.run(api, ref, ["true"])
            outer_docker = time.monotonic() - t0
            print(f"\n{a.package}:{image} ({res.image_digest[:19]})")
            print(f"  Docker image (unpacked)        {mb(docker_size)}")
            print(f"  Docker image layers (pulled)   {mb(res.image_compressed_bytes or 0)}")
            print(f"  SIF                            {mb(res.size)}   {res.size / docker_size:.0%} of the image, "
                  f"{res.size / (res.image_compressed_bytes or res.size):.0%} of its compressed layers")
            print(f"  SIF build (registry -> SIF)    {statistics.median(times):8.1f} s median of {len(times)} "
                  f"({', '.join(f'{t:.1f}' for t in times)})")
            print(f"  start `true`: apptainer exec --containall {e - s:6.2f} s (+ tool container: {outer_apt:.2f} s "
                  f"in all) | docker run --rm {outer_docker:.2f} s (exit {rc})")


if __name__ == "__main__":
    main()
