#!/usr/bin/env python
"""The seed's scaling test through the pipeline (not run by the tests): `relman farm scale-test` of N tasks of
the demo's verification workload (evtselect on the 3FHL events, each task's output compared with the
bare-metal reference) at Grid Engine + Docker and at Slurm + Apptainer, side by side with the same N runs
launched directly, 2 at a time (the farm's 2 slots): `docker run` of the image, and `apptainer exec
--containall` of the same SIF the farm pulled (in its tool container, as the local Apptainer sites run it).

Printed per way: wall time, tasks/s, failures (and differences from the reference for the farm ways), and
the start overhead per task: farm: the task's run on the node minus the bare program's run time (the
engine's process time of the baseline); direct: each run's wall minus the same bare program time. The
load average before and after is printed: the machine is shared.

usage: python benchmarks/farm_scale.py [--tasks 200] [--image REF] [--sif REF] [--ways sge-docker,slurm-apptainer]
                                       [--no-direct] [--report DIR]
The image defaults to the demo's runtime image; the SIF to its REPO:TAG-sif (`relman sif evtselect --image
v1.1.0-runtime --push --no-record` makes it). Needs: scripts/local-stack up --farm, a migrated database
(`relman db upgrade`), the demo's host build (`relman demo host-build`).
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from release_manager.farm.site import load_site  # noqa: E402

WAYS = {"sge-docker": "local-sge-docker", "slurm-apptainer": "local-slurm-apptainer",
        "slurm-docker": "local-slurm-docker", "sge-apptainer": "local-sge-apptainer"}


def scale_test(site: str, image: str, n: int, sif: str | None, report: Path) -> dict:
    cmd = [sys.executable, "-m", "release_manager", "farm", "scale-test", "--site", site, "--image", image,
           "--tasks", str(n), "--report", str(report), "--json"] + (["--sif", sif] if sif else [])
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    whole = time.monotonic() - t0
    try:
        rep = json.loads(out.stdout)
    except ValueError:
        raise SystemExit(f"{site}: scale-test failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    s = rep["summary"]
    shutil.rmtree(rep["directory"], ignore_errors=True)      # N task folders of MBs each
    return {"way": f"farm: {rep['scheduler']} + {rep['runtime']} ({site})", "wall": s["wall_seconds"],
            "failures": s["failed"], "differ": s["differ"], "overhead": s["overhead_seconds"]["median"],
            "overhead_p90": s["overhead_seconds"]["p90"], "queue_median": s["queue_seconds"]["median"],
            "program": s["program_seconds"], "whole_command": whole, "job": rep["job_id"], "rep": rep}


def direct(kind: str, image: str, sif_file: Path | None, n: int, user: str, scratch: Path, argv: list,
           program: float) -> dict:
    """The same command n times, 2 at a time, as the farm user: docker run, or apptainer exec in the tool image."""
    from release_manager import engine
    from release_manager.apptainer import Apptainer
    from release_manager.config import load_settings
    pw = pwd.getpwnam(user)
    work = Path(tempfile.mkdtemp(prefix="farm-scale-", dir=scratch.parent))
    shutil.chown(work, pw.pw_uid, pw.pw_gid)
    app = Apptainer(engine.connect(load_settings()), "relman/apptainer:sid") if kind == "apptainer" else None

    def one(i: int) -> tuple:
        d = work / f"task-{i}"
        d.mkdir()
        shutil.chown(d, pw.pw_uid, pw.pw_gid)
        t = time.monotonic()
        if app is not None:
            code = app.exec(sif_file, argv, {"/scratch": (scratch, True), "/work": (d, False)}, uid=pw.pw_uid,
                            gid=pw.pw_gid, pwd="/work").exit_code
        else:
            code = subprocess.run(["docker", "run", "--rm", "--init", "--user", f"{pw.pw_uid}:{pw.pw_gid}",
                                   "-v", f"{scratch}:/scratch:ro", "-v", f"{d}:/work", "-w", "/work", image, *argv],
                                  capture_output=True).returncode
        return code, time.monotonic() - t

    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(one, range(1, n + 1)))
    wall = time.monotonic() - t0
    shutil.rmtree(work)
    over = sorted(w - program for _, w in got)
    return {"way": f"direct: {'docker run' if kind == 'docker' else 'apptainer exec (tool container)'}, 2 at a time",
            "wall": wall, "failures": sum(1 for c, _ in got if c), "differ": None,
            "overhead": round(statistics.median(over), 3), "overhead_p90": round(over[int(0.9 * (len(over) - 1))], 3),
            "queue_median": None, "program": program, "whole_command": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--image", default="127.0.0.1:5000/fermi-lat/evtselect:v1.1.0-runtime")
    ap.add_argument("--sif", help="the SIF's ORAS reference (default: the image's REPO:TAG-sif)")
    ap.add_argument("--ways", default="sge-docker,slurm-apptainer")
    ap.add_argument("--no-direct", action="store_true")
    ap.add_argument("--report", type=Path, help="folder for the scale tests' reports (default: a temporary one)")
    a = ap.parse_args()
    report = a.report or Path(tempfile.mkdtemp(prefix="farm-scale-report-"))
    load_before = os.getloadavg()
    results = []
    for w in a.ways.split(","):
        site = WAYS[w]
        results.append(scale_test(site, a.image, a.tasks, a.sif if "apptainer" in w else None, report / site))
        print(f"{results[-1]['way']}: {results[-1]['wall']} s", file=sys.stderr)
    if not a.no_direct:
        first = results[0]["rep"]
        scratch = Path(load_site(first["site"])[0].binds.scratch.host)
        user = load_site(first["site"])[0].submit_user or "root"
        # the tasks' own argv, with the scratch area where the farm's tasks see it
        argv = list(first["command"])
        program = first["baseline"]["program_seconds"]
        results.append(direct("docker", first["image"], None, a.tasks, user, scratch, argv, program))
        print(f"{results[-1]['way']}: {results[-1]['wall']:.1f} s", file=sys.stderr)
        apt = [r["rep"] for r in results if r.get("rep") and r["rep"]["runtime"] == "apptainer"]
        if apt:
            site = load_site(apt[0]["site"])[0]
            sif_file = Path(site.apptainer.sif_cache) / (apt[0]["sif"].split("@")[1].replace(":", "-") + ".sif")
            results.append(direct("apptainer", apt[0]["image"], sif_file, a.tasks, user, scratch, argv, program))
            print(f"{results[-1]['way']}: {results[-1]['wall']:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()
    print(f"\n{a.tasks} tasks of evtselect's verification workload (3FHL events), 2 slots / 2 cores; "
          f"bare program {results[0]['program']:.2f} s")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"{'way':62} {'wall s':>8} {'tasks/s':>8} {'failed':>7} {'differ':>7} {'overhead s':>11} {'p90':>6} "
          f"{'queue s':>8}")
    for r in results:
        print(f"{r['way']:62} {r['wall']:8.1f} {a.tasks / r['wall']:8.3f} {r['failures']:>7} "
              f"{'-' if r['differ'] is None else r['differ']:>7} {r['overhead']:11.2f} {r['overhead_p90']:6.2f} "
              f"{'-' if r['queue_median'] is None else format(r['queue_median'], '.1f'):>8}")
    farm = [r for r in results if r.get("rep")]
    for r in farm:
        print(f"{r['way']}: job {r['job']}, whole command {r['whole_command']:.1f} s (baseline and comparisons "
              f"included), report {report}/{r['rep']['site']}/scale-test.html")


if __name__ == "__main__":
    main()
