"""The demo package: turn demo/evtselect into a git repository with release tags, and a host build.

Commits carry fixed authors and dates, so every machine gets the same commit and tree ids
(and so the same build keys) for the same sources.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import git

from release_manager.config import PROJECT_ROOT
from release_manager.errors import RelmanError

DEMO_SRC = PROJECT_ROOT / "demo" / "evtselect"
RELEASES = [("1.0.0", "2026-01-15T10:00:00+00:00"), ("1.1.0", "2026-03-02T10:00:00+00:00")]
IGNORED = {"evtselect", ".o"}


def _copy_sources(dest: Path) -> None:
    for p in sorted(DEMO_SRC.rglob("*")):
        rel = p.relative_to(DEMO_SRC)
        if p.is_dir() or p.suffix == ".o" or rel.as_posix() == "evtselect":
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)


def _commit(repo: git.Repo, message: str, when: str) -> git.Commit:
    repo.git.add("-A")
    env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_NAME": "relman demo",
           "GIT_AUTHOR_EMAIL": "relman-demo@example.org", "GIT_COMMITTER_NAME": "relman demo",
           "GIT_COMMITTER_EMAIL": "relman-demo@example.org"}
    with repo.git.custom_environment(**env):
        repo.git.commit("-q", "-m", message)
    return repo.head.commit


def init_repo(path: Path, echo=print) -> git.Repo:
    """Create the demo repository with tags v1.0.0 and v1.1.0 (idempotent)."""
    if (path / ".git").exists():
        repo = git.Repo(path)
        echo(f"demo repository {path} already exists (tags: {', '.join(t.name for t in repo.tags)})")
        return repo
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    _copy_sources(path)
    for version, when in RELEASES:
        (path / "VERSION").write_text(version + "\n")
        _commit(repo, f"evtselect {version}", when)
        with repo.git.custom_environment(GIT_COMMITTER_DATE=when, GIT_COMMITTER_NAME="relman demo",
                                         GIT_COMMITTER_EMAIL="relman-demo@example.org"):
            repo.git.tag("-a", f"v{version}", "-m", f"release {version}")
    echo(f"demo repository {path}: tags {', '.join(t.name for t in repo.tags)}, head {repo.head.commit.hexsha[:12]}")
    return repo


def add_commit(path: Path, relpath: str, text: str, message: str, when: str) -> str:
    """Append text to a file of the demo repository and commit: a 'later commit' for tests and the demo."""
    repo = git.Repo(path)
    with open(path / relpath, "a") as f:
        f.write(text)
    return _commit(repo, message, when).hexsha


def host_build(repo_path: Path, ref: str, prefix: Path, echo=print) -> Path:
    """Build evtselect on this machine (the bare-metal reference for verification)."""
    repo = git.Repo(repo_path)
    work = prefix.parent / (prefix.name + ".src")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    import tarfile, io
    data = io.BytesIO()
    repo.archive(data, treeish=ref, format="tar")
    data.seek(0)
    with tarfile.open(fileobj=data) as tar:
        tar.extractall(work, filter="data")
    env = dict(os.environ, CXXFLAGS="-g -O2", CFLAGS="-g -O2")
    for cmd in (["make", "-j2"], ["make", "install", f"PREFIX={prefix}"]):
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RelmanError(f"host build of evtselect failed: {' '.join(cmd)}:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    echo(f"host build of evtselect {ref} installed in {prefix}")
    return prefix / "bin" / "evtselect"


def run_demo(settings, specs, ref: str, input_file=None, echo=print) -> None:
    """Render, build (all variants, checked, pushed) and run the demo package; print a summary table."""
    from release_manager import engine
    from release_manager.build import Builder
    from release_manager.plan import make_plan
    from release_manager.render import render_package, write_files

    input_file = Path(input_file or PROJECT_ROOT.parent / "shared" / "data" / "fermi" / "ft1" / "3fhl-gc-events.fits.gz")
    if not input_file.is_file():
        raise RelmanError(f"demo input {input_file} not found (pass --input FILE)")
    init_repo(settings.data_dir / "repos" / "evtselect", echo=echo)
    out = settings.data_dir / "rendered" / "evtselect"
    write_files(render_package(make_plan(specs, "evtselect"), settings.registry, settings.namespace), out)
    echo(f"rendered Dockerfile and Apptainer definitions into {out}")
    builder = Builder(settings, specs, echo=echo)
    results = builder.build("evtselect", ref, push=True)
    runtime = next(r for r in results if r.variant == "runtime")
    work = settings.data_dir / "demo-output"
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o777)  # the image runs as the non-root user sas
    rc, log = engine.run(builder.api, f"{runtime.repository}@{runtime.digest}",
                         ["evtselect", "infile=/inputs/ft1.fits.gz", "outfile=/outputs/selected.fits",
                          "emin=20000", "emax=300000", "zmax=90"], user="sas",
                         binds={str(input_file.resolve()): {"bind": "/inputs/ft1.fits.gz", "mode": "ro"},
                                str(work): {"bind": "/outputs", "mode": "rw"}})
    if rc != 0:
        raise RelmanError(f"evtselect failed in {runtime.repository}@{runtime.digest}:\n{log}")
    echo(log.strip())
    echo("")
    echo(f"{'variant':10} {'status':8} {'size':>8}  {'checks':7} image")
    for r in results:
        ok = sum(1 for c in r.checks if c["ok"])
        checks = f"{ok}/{len(r.checks)}" if r.status == "built" else "earlier"  # a skipped image was checked when built
        echo(f"{r.variant:10} {r.status:8} {r.size / 1e6 if r.size else 0:>6.0f}MB  {checks:7} "
             f"{r.repository}:{r.tags[0]}@{(r.digest or '')[:19]}")
    echo(f"selected events: {work / 'selected.fits'}; results: {settings.results_dir / 'evtselect'}")
