#!/usr/bin/env python
"""Scaling test of the farm launcher on the local stack (not run by the tests): N container tasks (the
demo's selection on the 3FHL events) submitted with `relman farm submit` as one array job to each local
scheduler, against the same N tasks run directly with plain `docker run` (one at a time, and two at a
time: the farm's 2 slots), as the farm user.

Printed per way: wall time (submit to last task finished), tasks/s, submit-to-first-start (the first
task's folder appearing after `relman farm submit` returned, polled every 20 ms), failures; `submit s` is
the time `relman farm submit` took (Python start, digest resolution, script, qsub/sbatch).

usage: python benchmarks/farm_scaling.py [--tasks 100] [--image REF] [--sites local-sge-docker,local-slurm-docker]
                                         [--sif REF] [--no-baseline]
The image defaults to the demo's runtime image (relman demo run --demo-only pushes it).
Needs: scripts/local-stack up --farm and a migrated release database (`relman db upgrade`: every submission
is recorded).
"""
from __future__ import annotations

import argparse
import json
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FT1 = (ROOT.parent / "shared" / "data" / "fermi" / "ft1" / "3fhl-gc-events.fits.gz").resolve()

from release_manager.farm import accounting  # noqa: E402
from release_manager.farm.site import load_site  # noqa: E402

INPUT = "bench-3fhl.fits.gz"
ARGS = [f"infile=/scratch/{INPUT}", "outfile=selected.fits", "emin=20000", "emax=300000", "zmax=90"]


def farm_run(site_name: str, image: str, n: int, sif: str | None) -> dict:
    site = load_site(site_name)[0]
    cmd = [sys.executable, "-m", "release_manager", "farm", "submit", "--site", site_name, "--image", image,
           "--tasks", str(n), "--json"] + (["--sif", sif] if sif else []) + ["--", "evtselect", *ARGS]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{site_name}: submit failed: {out.stderr.strip()}")
    job = json.loads(out.stdout)
    submitted = time.monotonic() - t0
    d = Path(job["directory"])
    first = None
    while first is None:
        if any(d.glob("task-*/")):
            first = time.monotonic() - t0
        elif time.monotonic() - t0 > 600:
            raise SystemExit(f"{site_name}: no task started in 600 s")
        else:
            time.sleep(0.02)
    rows = accounting.wait(site, job["job_id"], tasks=n, timeout=3600, poll=0.5)
    wall = time.monotonic() - t0
    failed = [r.task for r in rows if r.state != "done" or r.exit_code != 0]
    shutil.rmtree(d, ignore_errors=True)   # N task folders of MBs each
    return {"way": f"{site.scheduler} + {site.runtime} ({site_name})", "wall": wall,
            "first_start": max(0.0, first - submitted),
            "submit": submitted, "failures": len(failed), "job": job["job_id"]}


def docker_run(image: str, n: int, parallel: int, user: str, scratch: Path) -> dict:
    pw = pwd.getpwnam(user)
    work = Path(tempfile.mkdtemp(prefix="farm-bench-", dir=scratch.parent))
    shutil.chown(work, pw.pw_uid, pw.pw_gid)

    def one(i: int) -> int:
        d = work / f"task-{i}"
        d.mkdir()
        shutil.chown(d, pw.pw_uid, pw.pw_gid)
        return subprocess.run(["docker", "run", "--rm", "--user", f"{pw.pw_uid}:{pw.pw_gid}", "-v", f"{scratch}:/scratch",
                               "-v", f"{d}:/work", "-w", "/work", image, "evtselect", *ARGS],
                              capture_output=True).returncode

    t0 = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        codes = list(pool.map(one, range(1, n + 1)))
    wall = time.monotonic() - t0
    shutil.rmtree(work)
    return {"way": f"plain docker run, {parallel} at a time", "wall": wall, "first_start": None, "submit": None,
            "failures": sum(1 for c in codes if c)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--image", default="127.0.0.1:5000/fermi-lat/evtselect:v1.1.0-runtime")
    ap.add_argument("--sites", default="local-sge-docker,local-slurm-docker")
    ap.add_argument("--sif", help="for Apptainer sites: the SIF reference (default: the image's REPO:TAG-sif)")
    ap.add_argument("--no-baseline", action="store_true")
    a = ap.parse_args()
    first_site = load_site(a.sites.split(",")[0])[0]
    scratch = Path(first_site.binds.scratch.host)
    shutil.copy(FT1, scratch / INPUT)
    (scratch / INPUT).chmod(0o644)
    # the image once in the engine, so that no way pays the pull
    subprocess.run(["docker", "pull", "-q", a.image], check=True, capture_output=True)
    results = [farm_run(s, a.image, a.tasks, a.sif) for s in a.sites.split(",")]
    if not a.no_baseline:
        pinned = subprocess.run(["docker", "image", "inspect", "-f", "{{index .RepoDigests 0}}", a.image],
                                capture_output=True, text=True, check=True).stdout.strip()
        results += [docker_run(pinned, a.tasks, p, first_site.submit_user or "root", scratch) for p in (1, 2)]
    print(f"\n{a.tasks} tasks (evtselect on the 3FHL events), 2 slots / 2 cores")
    print(f"{'way':52} {'wall s':>8} {'tasks/s':>8} {'submit s':>9} {'1st start s':>12} {'failures':>9}")
    for r in results:
        print(f"{r['way']:52} {r['wall']:8.1f} {a.tasks / r['wall']:8.2f} "
              f"{'-' if r['submit'] is None else format(r['submit'], '.2f'):>9} "
              f"{'-' if r['first_start'] is None else format(r['first_start'], '.2f'):>12} {r['failures']:>9}")


if __name__ == "__main__":
    main()
