#!/usr/bin/env python3
"""Workflow benchmarks (issue 7): the commands as Jenkins runs them (`relman ...` in a subprocess), on a
fresh package of their own (a clone of the demo repository under a new name), each beside its baseline.

1. first nightly (build, check, push, verify, tag, aliases)   vs  `relman build --push` of the same variants
2. nightly with nothing changed (recorded skip)                vs  `relman build --push` again (the Builder's skip)
3. nightly after a one-line commit                             vs  the first nightly
4. promote every variant / gc --dry-run / reconcile            (registry + database only, no engine work)

Needs the local stack (scripts/local-stack up) and the host build of the demo (for verification); works in a
throw-away data folder under /tmp. Usage: python3 benchmarks/nightly.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from release_manager import demo  # noqa: E402


def relman(env, *args, ok=(0,)):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "release_manager", *args], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode not in ok:
        raise SystemExit(f"relman {' '.join(args)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return dt, r.stdout + r.stderr


def main():
    work = Path(tempfile.mkdtemp(prefix="relman-bench-nightly-"))
    data = work / "data"
    name = f"bn{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, RELMAN_DATA_DIR=str(data), RELMAN_SPECS_DIR=str(work / "specs"))
    try:
        demo.init_repo(data / "repos" / "evtselect", echo=lambda m: None)
        demo.host_build(data / "repos" / "evtselect", "v1.1.0", data / "host-build" / "evtselect", echo=lambda m: None)
        src = work / f"{name}-src"
        subprocess.run(["git", "clone", "-q", str(data / "repos" / "evtselect"), str(src)], check=True)
        (work / "specs").mkdir()
        shutil.copy(ROOT / "image_specs" / "platforms.yaml", work / "specs")
        text = (ROOT / "image_specs" / "evtselect.yaml").read_text().replace("name: evtselect", f"name: {name}")
        (work / "specs" / f"{name}.yaml").write_text(text.replace('git: "{data_dir}/repos/evtselect"',
                                                                  f'git: "file://{src}"'))
        relman(env, "db", "upgrade")
        rows = []
        first, _ = relman(env, "nightly", name, "--date", "2026-10-01")
        build_again, _ = relman(env, "build", name, "--ref", "main", "--push", "--variant", "runtime",
                                "--variant", "debug", "--variant", "full")
        rows.append(("first nightly (build+verify+tag)", first, "relman build --push, keys present", build_again))
        skip, out = relman(env, "nightly", name, "--date", "2026-10-02")
        assert "skipped" in out, out
        rows.append(("nightly, nothing changed", skip, "relman build --push, keys present", build_again))
        demo.add_commit(src, "README.md", "\nbenchmark commit\n", "bench", "2026-10-02T10:00:00+00:00")
        second, _ = relman(env, "nightly", name, "--date", "2026-10-03")
        rows.append(("nightly after a one-line commit", second, "first nightly", first))
        promote, _ = relman(env, "promote", name, "main", "--to", "bench", "--by", "bench", "--reason", "benchmark")
        rows.append(("promote 3 variants (manifest copies)", promote, "-", None))
        gc, _ = relman(env, "gc", "--dry-run", "--package", name)
        rows.append(("gc --dry-run", gc, "-", None))
        rec, _ = relman(env, "reconcile", "--package", name)
        rows.append(("reconcile", rec, "-", None))
        print(f"{'measurement':40} {'seconds':>8}   {'baseline':36} {'seconds':>8}")
        for what, t, base, bt in rows:
            print(f"{what:40} {t:8.2f}   {base:36} {'' if bt is None else f'{bt:8.2f}'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        from release_manager.config import load_settings
        from release_manager.registry import Registry
        settings = load_settings()
        reg, path = Registry(settings.registry), f"{settings.namespace}/{name}"
        for d in {reg.manifest_digest(path, t) for t in reg.tags(path)} - {None}:
            reg.delete_manifest(path, d)


if __name__ == "__main__":
    main()
