"""The demo package: turn demo/evtselect into a git repository with release tags, and a host build.

Commits carry fixed authors and dates, so every machine gets the same commit and tree ids
(and so the same build keys) for the same sources.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import git

from release_manager.config import PROJECT_ROOT
from release_manager.errors import RelmanError

DEMO_SRC = PROJECT_ROOT / "demo" / "evtselect"
RELEASES = [("1.0.0", "2026-01-15T10:00:00+00:00"), ("1.1.0", "2026-03-02T10:00:00+00:00")]


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


def run_demo(settings, specs, input_file=None, echo=print) -> dict:
    """The main job on embedded defaults: the nightly of the demo package, then a run of its image.

    Demo repository, release database (SQLite, migrated), the bare-metal reference build, then
    `relman nightly evtselect` (build every variant, check, push, tag, verify against the host
    build, record, move the aliases), then evtselect from the verified runtime image, pulled by
    digest, on real events, and a closing summary table.
    """
    from release_manager import engine, tags
    from release_manager.db import migrate
    from release_manager.db.connection import for_settings
    from release_manager.workflows.common import Context
    from release_manager.workflows.nightly import run_nightly

    input_file = Path(input_file or PROJECT_ROOT.parent / "shared" / "data" / "fermi" / "ft1" / "3fhl-gc-events.fits.gz")
    if not input_file.is_file():
        raise RelmanError(f"demo input {input_file} not found (pass --input FILE)")
    repo = settings.data_dir / "repos" / "evtselect"
    init_repo(repo, echo=echo)
    db = for_settings(settings)
    after = migrate.upgrade(db)
    echo(f"release database {db.masked_url} at migration {after.current}")
    host_build(repo, "main", settings.data_dir / "host-build" / "evtselect", echo=echo)
    ctx = Context(settings, specs, echo=echo)
    report = run_nightly(ctx, "evtselect")
    runtime = next((i for i in report.get("images", []) if i["variant"] == "runtime"), None)
    selected = None
    if runtime and runtime.get("digest"):
        work = settings.data_dir / "demo-output"
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o777)  # the image runs as the non-root user sas
        ref = f"{tags.repository(settings.registry, settings.namespace, 'evtselect')}@{runtime['digest']}"
        api = ctx.engine()
        rc, log = engine.run(api, ref, ["evtselect", "infile=/inputs/ft1.fits.gz", "outfile=/outputs/selected.fits",
                                        "emin=20000", "emax=300000", "zmax=90"], user="sas", through_entrypoint=True,
                             binds={str(input_file.resolve()): {"bind": "/inputs/ft1.fits.gz", "mode": "ro"},
                                    str(work): {"bind": "/outputs", "mode": "rw"}})
        if rc != 0:
            raise RelmanError(f"evtselect failed in {ref}:\n{log}")
        echo(log.strip())
        selected = work / "selected.fits"
    summary(echo, "evtselect", report, settings)
    if selected:
        echo(f"selected events: {selected}")
    echo(f"database: {db.masked_url}")
    return report


def summary(echo, package: str, report: dict, settings) -> None:
    """The closing table of a nightly: one line per variant, then where the reports are."""
    echo("")
    echo(f"nightly {package}: {report['status']}: {report.get('message', '')}")
    images = report.get("images", [])
    if images:
        echo(f"{'variant':9} {'build':10} {'verdict':15} {'alias':22} digest")
        for i in images:
            alias = (i.get("alias") or "-").rsplit(":", 1)[-1]
            # a skipped nightly lists the recorded images with their database status
            build = i.get("build") or i.get("status", "-")
            echo(f"{i['variant']:9} {build:10} {i.get('verdict', '-'):15} {alias:22} {(i.get('digest') or '')[:19]}")
    reports = sorted({str(Path(i["verify_report"]).parent.parent) for i in images if i.get("verify_report")})
    echo(f"results: {settings.results_dir / package}" + (f"; verification reports: {', '.join(reports)}"
                                                         if reports else ""))


def run_sciencetools(settings, specs, echo=print) -> dict:
    """The ScienceTools nightly on embedded defaults: the fermi-lat mirrors made from ../shared, the
    explicit rhel7 -> debian12-local override, the host build of the release as the reference, then
    `relman nightly sciencetools` and its summary."""
    from release_manager import fermitools
    from release_manager.workflows.common import Context
    from release_manager.workflows.nightly import NightlyFailed, run_nightly
    fermitools.init_mirrors(settings.data_dir, Path(settings.specs_dir), echo=echo)
    update = {}
    if not settings.git_mirrors:
        update["git_mirrors"] = {fermitools.UPSTREAM: f"{fermitools.mirror_root(settings.data_dir)}/"}
    if "rhel7" not in settings.platform_overrides:
        update["platform_overrides"] = {**settings.platform_overrides, "rhel7": "debian12-local"}
        echo("ScienceTools: production platform rhel7, built here on debian12-local (an explicit override, "
             "recorded in the labels and the database)")
    st = settings.model_copy(update=update)
    try:
        report = run_nightly(Context(st, specs, echo=echo), "sciencetools")
    except NightlyFailed as exc:
        summary(echo, "sciencetools", exc.report, st)
        raise
    summary(echo, "sciencetools", report, st)
    return report
