#!/usr/bin/env python3
"""Build benchmarks of the builds issue, each side by side with its baseline; prints a table.

1. skip on a fresh agent: key in the registry, no local image  vs  `docker build --no-cache` (an empty cache)
2. skip for a GlastRelease-sized tree (~30,000 files, ~1 GB)   vs  a fully cached `docker build` (sends the context)
3. demo sizes: runtime / full, debug layers over runtime
4. rebuild after a one-file source change                      vs  the cold build (no layer cache)

Needs the local stack (scripts/local-stack up). Works in a throw-away data folder under /tmp.
Usage: python3 benchmarks/build.py [--big-files 30000] [--big-mb 1000] [--skip-big]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from release_manager import demo  # noqa: E402
from release_manager.build import Builder  # noqa: E402
from release_manager.config import load_settings  # noqa: E402
from release_manager.plan import make_plan  # noqa: E402
from release_manager.render import render_package, write_files  # noqa: E402
from release_manager.spec import load_specs  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def relman(env, *args):
    r = subprocess.run([sys.executable, "-m", "release_manager", *args], env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"relman {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r.stdout + r.stderr


def drop_local(api, results):
    for r in results:
        for img in api.images(filters={"label": f"relman.build-key={r.build_key}"}):
            api.remove_image(img["Id"], force=True)


def spec_dir(work: Path, name: str, source: str) -> Path:
    d = work / f"specs-{name}"
    d.mkdir()
    shutil.copy(ROOT / "image_specs" / "platforms.yaml", d)
    text = (ROOT / "image_specs" / "evtselect.yaml").read_text().replace("name: evtselect", f"name: {name}")
    text = text.replace('git: "{data_dir}/repos/evtselect"', f'git: "{source}"')
    (d / f"{name}.yaml").write_text(text)
    return d


def make_big_repo(path: Path, files: int, megabytes: int) -> None:
    """The demo sources plus `files` generated files of ~`megabytes` MB in all, committed."""
    shutil.copytree(demo.DEMO_SRC, path, ignore=shutil.ignore_patterns("*.o", "evtselect"))
    size = max(1, megabytes * 1_000_000 // files)
    rnd = os.urandom(size * 64)
    for i in range(files):
        d = path / "bulk" / f"pkg{i // 300:03d}"
        d.mkdir(parents=True, exist_ok=True)
        off = (i * 7919) % (len(rnd) - size)
        (d / f"f{i:05d}.dat").write_bytes(rnd[off:off + size])
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "big"],
                ["git", "tag", "v1.0.0"]):
        subprocess.run(cmd, cwd=path, env=env, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-files", type=int, default=30000)
    ap.add_argument("--big-mb", type=int, default=1000)
    ap.add_argument("--skip-big", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relman-bench-"))
    rows = []
    try:
        env = dict(os.environ, RELMAN_DATA_DIR=str(work / "data"))
        settings = load_settings(data_dir=work / "data")
        demo.init_repo(settings.data_dir / "repos" / "evtselect", echo=lambda m: None)
        specs = load_specs(ROOT / "image_specs")
        b = Builder(settings, specs, echo=lambda m: None)
        api = b.api

        # 1. fresh agent
        results = b.build("evtselect", "v1.1.0", ["runtime"], push=True)
        drop_local(api, results)
        t_skip, out = timed(lambda: relman(env, "build", "evtselect", "--ref", "v1.1.0", "--variant", "runtime", "--push"))
        assert "skipped" in out, out
        rendered = work / "rendered"
        write_files(render_package(make_plan(specs, "evtselect"), settings.registry, settings.namespace), rendered)
        subprocess.run(["git", "-C", str(settings.data_dir / "repos" / "evtselect"), "archive", "--prefix=src/",
                        "-o", str(work / "src.tar"), "v1.1.0"], check=True)
        subprocess.run(["tar", "-xf", str(work / "src.tar"), "-C", str(rendered)], check=True)
        t_docker, _ = timed(lambda: subprocess.run(["docker", "build", "-q", "--no-cache", "--target", "runtime",
                                                    "-t", "relman-bench:cold", str(rendered)], check=True,
                                                   capture_output=True))
        rows.append(("skip, fresh agent (relman build, whole command)", t_skip,
                     "docker build --no-cache (empty cache)", t_docker))
        print(rows[-1], flush=True)

        # 2. GlastRelease-sized tree
        if not a.skip_big:
            big = work / "big-src"
            t_gen, _ = timed(lambda: make_big_repo(big, a.big_files, a.big_mb))
            print(f"generated {a.big_files} files, {a.big_mb} MB, committed in {t_gen:.0f} s", flush=True)
            bspecs = load_specs(spec_dir(work, "evtbig", f"file://{big}"))
            bb = Builder(settings, bspecs, echo=lambda m: None, api=api)
            bres = bb.build("evtbig", "v1.0.0", ["runtime"], push=True)
            env_big = dict(env, RELMAN_SPECS_DIR=str(work / "specs-evtbig"))
            # let the 1 GB build's writes reach the disk first: the skip is measured, not the writeback
            subprocess.run(["sync"], check=True)
            runs = []
            for _ in range(3):
                drop_local(api, bres)
                t, out = timed(lambda: relman(env_big, "build", "evtbig", "--ref", "v1.0.0", "--variant", "runtime",
                                              "--push"))
                assert "skipped" in out, out
                runs.append(t)
            t_bskip = sorted(runs)[1]
            print(f"big-tree skip, 3 runs: {', '.join(f'{t:.2f}' for t in runs)} s (median reported)", flush=True)
            bctx = work / "big-ctx"
            write_files(render_package(make_plan(bspecs, "evtbig"), settings.registry, settings.namespace), bctx)
            shutil.copytree(big, bctx / "src", ignore=shutil.ignore_patterns(".git"))
            subprocess.run(["docker", "build", "-q", "--target", "runtime", "-t", "relman-bench:big", str(bctx)],
                           check=True, capture_output=True)
            t_bdocker, _ = timed(lambda: subprocess.run(["docker", "build", "-q", "--target", "runtime", "-t",
                                                         "relman-bench:big", str(bctx)], check=True, capture_output=True))
            rows.append((f"skip, {a.big_files} files / {a.big_mb} MB tree (relman build)", t_bskip,
                         "docker build, fully cached (sends the context)", t_bdocker))
            print(rows[-1], flush=True)

        # 3. sizes
        full = b.build("evtselect", "v1.1.0", ["runtime", "debug", "full"], force=True)  # local images, sizes known
        by = {r.variant: r for r in full}
        ratio = by["runtime"].size / by["full"].size
        extra = len(by["debug"].layers) - len(by["runtime"].layers)
        print(f"sizes: runtime {by['runtime'].size / 1e6:.0f} MB, debug {by['debug'].size / 1e6:.0f} MB, "
              f"full {by['full'].size / 1e6:.0f} MB; runtime/full = {ratio:.1%} (target <= 20%); "
              f"debug adds {extra} layer(s) to runtime (target 1)")

        # 4. one-file rebuild vs cold
        t_cold, _ = timed(lambda: b.build("evtselect", "v1.1.0", ["runtime"], force=True, no_cache=True))
        repo = settings.data_dir / "repos" / "evtselect"
        demo.add_commit(repo, "src/selection.cxx", "\nint relman_benchmark_marker() { return 42; }\n", "change one file",
                        "2026-06-01T10:00:00+00:00")
        t_one, _ = timed(lambda: b.build("evtselect", "main", ["runtime"]))
        rows.append(("rebuild after a one-file change (runtime)", t_one, "cold build, no layer cache (runtime)", t_cold))

        print()
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(other builds on the engine inflate every figure)")
        print(f"{'measured':58} {'s':>7}   {'baseline':48} {'s':>7}  ratio")
        for name, t, base, tb in rows:
            print(f"{name:58} {t:7.2f}   {base:48} {tb:7.2f}  {t / tb:5.2f}")
    finally:
        subprocess.run(["docker", "rmi", "-f", "relman-bench:cold", "relman-bench:big"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
