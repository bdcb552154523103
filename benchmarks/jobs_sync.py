#!/usr/bin/env python3
"""`relman jobs sync` against the Jenkins stand-in (tests/jenkins_standin.py); prints a table.

1. first sync of every job of image_specs/ (the seven SAS specs and the evtselect demo): all created
2. second sync, nothing changed: must make 0 write requests and take <= 2 s
3. one spec changed (evtselect keep_builds): only that package's folder and jobs reconfigured
4. dry run with --prune on the synced server: reads only

Usage: python3 benchmarks/jobs_sync.py [--rounds 3]   (exit 1 if the second-sync target is missed)
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from jenkins_standin import TOKEN, JenkinsStandin, reference_jobset, reference_settings  # noqa: E402
from release_manager.jenkins.client import Client  # noqa: E402
from release_manager.jenkins.sync import sync  # noqa: E402

SECOND_SYNC_LIMIT = 2.0


def measure(server, client, jobset, **kw):
    server.reset_counts()
    t0 = time.perf_counter()
    counts = sync(client, jobset, echo=lambda m: None, **kw)
    return time.perf_counter() - t0, counts, server.write_count, len(server.requests)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="second syncs to time (the worst is reported)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    jobset = reference_jobset(jenkins_scm_url="https://git.example.org/relman.git")   # seed job included
    model_s = time.perf_counter() - t0
    rows = []
    with JenkinsStandin() as server:
        client = Client(reference_settings(jenkins_url=server.url, jenkins_user="admin", jenkins_token=TOKEN))
        rows.append(("first sync (create all)",) + measure(server, client, jobset))
        seconds = []
        for _ in range(args.rounds):
            seconds.append(measure(server, client, jobset))
        worst = max(seconds, key=lambda r: r[0])
        rows.append((f"second sync, worst of {args.rounds}",) + worst)
        with tempfile.TemporaryDirectory() as tmp:
            specs = Path(tmp) / "image_specs"
            shutil.copytree(ROOT / "image_specs", specs)
            p = specs / "evtselect.yaml"
            data = yaml.safe_load(p.read_text())
            data["jenkins"]["keep_builds"] = 12
            p.write_text(yaml.safe_dump(data))
            changed = reference_jobset(specs, jenkins_scm_url="https://git.example.org/relman.git")
            rows.append(("one spec changed",) + measure(server, client, changed))
        rows.append(("dry run --prune",) + measure(server, client, changed, dry_run=True, prune=True))
    print(f"{len(jobset.jobs)} jobs (seed job included) in {len(jobset.folders)} folders; specs + model: {model_s:.2f} s")
    print(f"{'case':28} {'seconds':>8} {'writes':>7} {'requests':>9}  actions")
    for name, sec, counts, writes, reqs in rows:
        acts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        print(f"{name:28} {sec:8.3f} {writes:7d} {reqs:9d}  {acts}")
    second = rows[1]
    ok = second[3] == 0 and second[1] <= SECOND_SYNC_LIMIT
    print(f"second sync: {second[3]} write requests, {second[1]:.3f} s (target: 0 writes, <= {SECOND_SYNC_LIMIT} s): "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
