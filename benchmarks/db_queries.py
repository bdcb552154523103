#!/usr/bin/env python3
"""How fast the release database answers `relman images list --package X` and `relman history X`.

Fills a fresh SQLite database (migrated by relman itself) with --images images spread over --packages
packages, one verification run of --checks checks per image, a promotion for every tenth image and
the audit events of all of it (bulk inserts: the setup is not what is measured). Then times, for
one package:
  * the queries behind both commands, in this process (best and median of --repeat runs);
  * both whole commands as subprocesses (`relman ... --json`, wall time, best and median).
Budgets: 200 ms a query, 1 s a command. Prints the figures; exit 1 when a budget is exceeded.

    python benchmarks/db_queries.py                 # 10,000 images, 10,000 runs x 20 checks
    python benchmarks/db_queries.py --images 500    # a quick look
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from release_manager.db import connect, migrate  # noqa: E402
from release_manager.db import models as m  # noqa: E402
from release_manager.db.queries import history, list_images  # noqa: E402

QUERY_BUDGET = 0.200
COMMAND_BUDGET = 1.0
VARIANTS = ("runtime", "debug", "full")


def sha(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def fill(db, n_images: int, n_packages: int, n_checks: int) -> None:
    t0 = dt.datetime(2023, 1, 1)
    now = dt.datetime(2024, 6, 1)
    with db.engine.begin() as c:
        c.execute(insert(m.Package), [{"id": p + 1, "name": f"pkg{p:02d}", "created_at": t0}
                                      for p in range(n_packages)])
        c.execute(insert(m.SourceRevision), [{"id": i + 1, "package_id": i % n_packages + 1, "ref": f"v{i}",
                                              "commit": hashlib.sha1(str(i).encode()).hexdigest(),
                                              "created_at": t0} for i in range(n_images)])
        images, tags, runs, checks, promos, audit = [], [], [], [], [], []
        for i in range(n_images):
            pkg, variant = i % n_packages + 1, VARIANTS[i % 3]
            key = hashlib.sha256(f"key{i}".encode()).hexdigest()
            started = t0 + dt.timedelta(hours=i)
            status = "promoted" if i % 7 == 0 else ("verified" if i % 4 else "verification-failed")
            images.append({
                "id": i + 1, "package_id": pkg, "revision_id": i + 1, "variant": variant, "target": variant,
                "ref": f"v{i}", "commit": hashlib.sha1(str(i).encode()).hexdigest(),
                "repository": f"127.0.0.1:5000/fermi-lat/pkg{pkg - 1:02d}", "tags": [f"v{i}-{variant}"],
                "identity": sha(f"d{i}"), "digest": sha(f"d{i}"), "image_id": sha(f"i{i}"), "size": 400_000_000 + i,
                "layers": [{"digest": sha(f"l{i}-{k}"), "size": 1000 * k} for k in range(8)],
                "labels": {"org.opencontainers.image.version": f"v{i}"}, "checks": [], "build_key": key,
                "base_digest": sha("base"), "spec_hash": key[:40], "builder_host": "builder-1",
                "build_url": f"https://jenkins.example/job/pkg/{i}/", "started": started,
                "finished": started + dt.timedelta(minutes=20), "duration": 1200.0, "status": status,
                "created_at": now, "updated_at": now})
            tags += [{"image_pk": i + 1, "tag": f"v{i}-{variant}", "created_at": now},
                     {"image_pk": i + 1, "tag": f"bk-{key[:40]}", "created_at": now}]
            runs.append({"id": i + 1, "image_pk": i + 1, "reference": "host-build", "workload": "3fhl",
                         "verdict": "failed" if status == "verification-failed" else "passed",
                         "started": started + dt.timedelta(hours=1), "finished": started + dt.timedelta(hours=2),
                         "report_location": f"/reports/{i}.html", "summary": {"checks": n_checks},
                         "created_at": now})
            for k in range(n_checks):
                checks.append({"run_id": i + 1, "file": f"out/ft1_{k % 4}.fits", "hdu": "EVENTS",
                               "column": f"COL{k}", "test": "ks", "statistic": 0.01 * k, "p_value": 0.5,
                               "thresholds": {"p_value": 0.01},
                               "result": "fail" if status == "verification-failed" and k == 0 else "pass"})
            if status == "promoted":
                promos.append({"image_pk": i + 1, "from_tag": f"v{i}-{variant}", "to_tag": f"stable-{variant}",
                               "promoted_by": "alice", "promoted_at": started + dt.timedelta(hours=3),
                               "reason": "release"})
            for frm, to in ((None, "pushed"), ("pushed", "verifying"), ("verifying", status)):
                audit.append({"at": now, "actor": "jenkins", "action": "transition", "entity": "image",
                              "entity_id": i + 1, "package_id": pkg, "from_status": frm, "to_status": to,
                              "detail": None})
        for table, rows in ((m.Image, images), (m.ImageTag, tags), (m.VerificationRun, runs),
                            (m.VerificationCheck, checks), (m.Promotion, promos), (m.AuditEvent, audit)):
            for start in range(0, len(rows), 20000):
                c.execute(insert(table), rows[start:start + 20000])
        if db.backend == "sqlite":
            c.exec_driver_sql("ANALYZE")


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished subprocesses: steady when the machine is busy."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(fn, repeat: int):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times), statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--packages", type=int, default=10)
    ap.add_argument("--checks", type=int, default=20, help="checks per verification run")
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--db", help="SQLite file to use (default: a temporary one)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.db"
        if path.exists():
            path.unlink()
        url = f"sqlite:///{path}"
        db = connect(url)
        migrate.upgrade(db)
        t = time.perf_counter()
        fill(db, args.images, args.packages, args.checks)
        print(f"setup: {args.images} images over {args.packages} packages, {args.images} verification runs "
              f"x {args.checks} checks ({args.images * args.checks} check rows), bulk insert "
              f"{time.perf_counter() - t:.1f} s, {path.stat().st_size / 1e6:.0f} MB")

        pkg = "pkg03"
        failures = []
        with db.read() as s:
            rows, best, med = timed(lambda: list_images(s, package=pkg), args.repeat)
        print(f"query   images list --package {pkg}: {len(rows)} rows, best {best * 1e3:.1f} ms, "
              f"median {med * 1e3:.1f} ms (budget {QUERY_BUDGET * 1e3:.0f} ms)")
        if med > QUERY_BUDGET:
            failures.append("images list query")
        with db.read() as s:
            h, best, med = timed(lambda: history(s, pkg), args.repeat)
        print(f"query   history {pkg}: {len(h['images'])} images, {len(h['verifications'])} verifications, "
              f"{len(h['promotions'])} promotions, best {best * 1e3:.1f} ms, median {med * 1e3:.1f} ms "
              f"(budget {QUERY_BUDGET * 1e3:.0f} ms)")
        if med > QUERY_BUDGET:
            failures.append("history query")
        db.dispose()

        env = {**os.environ, "RELMAN_DB_URL": url}
        env.pop("RELMAN_CONFIG", None)
        for cmd in (["images", "list", "--package", pkg], ["images", "list", "--package", pkg, "--json"],
                    ["history", pkg], ["history", pkg, "--json"]):
            def run(cmd=cmd):
                p = subprocess.run([sys.executable, "-m", "release_manager", *cmd], env=env,
                                   capture_output=True, text=True)
                if p.returncode:
                    raise SystemExit(f"relman {' '.join(cmd)} failed: {p.stderr}")
                return p.stdout
            n = max(1, args.repeat // 2)
            cpu0 = _children_cpu()
            out, best, med = timed(run, n)
            cpu = (_children_cpu() - cpu0) / n
            print(f"command relman {' '.join(cmd)}: {len(out.splitlines())} lines, wall best {best:.2f} s, "
                  f"median {med:.2f} s (budget {COMMAND_BUDGET:.0f} s); cpu {cpu:.2f} s a run")
            if med > COMMAND_BUDGET:
                failures.append("relman " + " ".join(cmd))
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPU(s)" +
          (": busy machine, wall times are inflated; compare the cpu figures" if load > (os.cpu_count() or 1) else ""))
    if failures:
        print("OVER BUDGET: " + ", ".join(failures))
        return 1
    print("all within budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
