#!/usr/bin/env python3
"""How fast `relman status` shows every package: the terminal view and the static site.

Setup (not measured): a fresh SQLite database filled with benchmarks/db_queries.py's bulk filler
(--images images over the packages of image_specs/, a verification run each, promotions), then
renamed to the spec packages and given dated nightly tags, so that the board has a year of nightly
history per package to plot.
Measured (wall time, best and median of --repeat runs, plus the CPU time of the processes):
  * `relman status` (terminal view, piped) and `relman status --html DIR` as subprocesses;
  * the same in this process: the board query, the rows, the site;
  * baseline: `relman history PKG --json` for every package, one after another (how the facts were
    gathered without the board).
Targets: ≤ 1 s terminal, ≤ 3 s site. Prints the figures; exit 1 when a target is missed.

    python3 benchmarks/status.py                  # 9,000 images
    python3 benchmarks/status.py --images 900     # a quick look
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from startup import compile_relman  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import bindparam, insert, update  # noqa: E402

from db_queries import fill  # noqa: E402
from release_manager.config import PROJECT_ROOT, load_settings  # noqa: E402
from release_manager.db import connect, migrate  # noqa: E402
from release_manager.db import models as m  # noqa: E402
from release_manager.db.queries import status_board  # noqa: E402
from release_manager.spec import load_specs  # noqa: E402
from release_manager.status import NIGHTLY_PREFIX, rows  # noqa: E402
from release_manager.status_site import write_site  # noqa: E402

TERMINAL_TARGET, SITE_TARGET = 1.0, 3.0


def prepare(url: str, n_images: int, names):
    db = connect(url, fresh=True)
    migrate.upgrade(db)
    fill(db, n_images, len(names), 5)
    t0 = dt.datetime(2023, 1, 1)
    with db.engine.begin() as c:
        c.execute(update(m.Package).where(m.Package.id == bindparam("pid")).values(name=bindparam("new")),
                  [{"pid": i + 1, "new": n} for i, n in enumerate(names)])
        tagged = []
        for i in range(n_images):  # fill() starts image i at t0 + i hours: a dated nightly tag of that day
            day = (t0 + dt.timedelta(hours=i)).strftime("%Y%m%d")
            variant = ("runtime", "debug", "full")[i % 3]
            tagged.append({"iid": i + 1, "tags": [f"nightly-{day}-{variant}"],
                           "repo": f"127.0.0.1:5000/fermi-lat/{names[i % len(names)]}"})
        c.execute(update(m.Image).where(m.Image.id == bindparam("iid"))
                  .values(tags=bindparam("tags"), repository=bindparam("repo")), tagged)
        # the tag table too, as db/records.py keeps it (the terminal view finds the nightlies there)
        c.execute(insert(m.ImageTag), [{"image_pk": r["iid"], "tag": r["tags"][0], "created_at": t0} for r in tagged])
    db.dispose()


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(args, env, repeat):
    """(best, median wall s, CPU s per run) of a relman command."""
    times = []
    c0 = children_cpu()
    for _ in range(repeat):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "release_manager", *args], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(f"relman {' '.join(args)} failed: {p.stderr[-500:]}")
    return min(times), statistics.median(times), (children_cpu() - c0) / repeat


def inproc(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main():
    compile_relman()  # as an installed relman has them (benchmarks/startup.py)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=9000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    specs = load_specs(PROJECT_ROOT / "image_specs")
    names = sorted(specs.packages)
    work = Path(tempfile.mkdtemp(prefix="relman-t13-status-"))
    url = f"sqlite:///{work / 'relman.db'}"
    prepare(url, a.images, names)
    env = dict(os.environ, RELMAN_DB_URL=url, RELMAN_DATA_DIR=str(work), PYTHONPATH=str(PROJECT_ROOT))
    print(f"{a.images} images over {len(names)} packages; load average {os.getloadavg()[0]:.2f}")
    term = run(["status"], env, a.repeat)
    site = run(["status", "--html", str(work / "site")], env, a.repeat)
    pages = len(list((work / "site").glob("*.html")))
    size = sum(p.stat().st_size for p in (work / "site").rglob("*") if p.is_file())
    t0 = time.perf_counter()
    c0 = children_cpu()
    for n in names:
        subprocess.run([sys.executable, "-m", "release_manager", "history", n, "--json"], env=env,
                       capture_output=True, check=True)
    base, base_cpu = time.perf_counter() - t0, children_cpu() - c0

    settings = load_settings(db_url=url, data_dir=work)
    db = connect(url)

    def board():
        with db.read() as s:
            return status_board(s)
    q = inproc(board, a.repeat)

    def lean_board():
        with db.read() as s:
            return status_board(s, latest_only=True, nightly_prefix=NIGHTLY_PREFIX)
    ql = inproc(lean_board, a.repeat)
    boards = board()
    r = inproc(lambda: rows(settings, specs, boards), a.repeat)
    table = rows(settings, specs, boards)
    w = inproc(lambda: write_site(table, boards, work / "site2", "now"), a.repeat)
    print(f"site: {pages} pages, {size / 1e6:.1f} MB")
    print(f"{'measured':44} {'best s':>7} {'median':>7} {'CPU s':>6}   target")
    for name, (best, med, cpu), target in (("relman status (terminal view)", term, TERMINAL_TARGET),
                                           ("relman status --html DIR", site, SITE_TARGET)):
        flag = "" if best <= target else "  MISSED"
        print(f"{name:44} {best:7.2f} {med:7.2f} {cpu:6.2f}   <= {target:.0f} s{flag}")
    for name, (best, med) in (("in process: board query (5 queries)", q),
                              ("in process: board, terminal view (shown images)", ql), ("in process: rows", r),
                              ("in process: write the site", w)):
        print(f"{name:44} {best:7.3f} {med:7.3f}")
    print(f"{'baseline: relman history PKG --json x ' + str(len(names)):44} {base:7.2f} {'':7} {base_cpu:6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    ok = term[0] <= TERMINAL_TARGET and site[0] <= SITE_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
