"""Local mirrors of the fermi-lat repositories, made from the git bundles in ../shared/sources.

Sites build ScienceTools from mirrors (settings.git_mirrors maps https://github.com/fermi-lat/ to a
local folder or a mirror server). Here the mirror is made from the bundles: one bare repository per
package, and the umbrella fermi-lat/ScienceTools rebuilt from its build files with each package as a
git submodule (gitlink) pinned at the bundle's commit. Commits carry fixed authors and dates, so every
machine gets the same commit ids, hence the same build keys.

Branches of the umbrella (fixtures for tests, benchmarks and the nightly):
  master            the subset; tag FIXTURE_TAG
  leaf-change       pins a dataSubselector commit whose only change is a comment in a source file
                    (a one-package change: its layer and those after it rebuild, nothing else)
  broken-selection  pins a dataSubselector commit with a one-line change in a selection: the sky-cone
                    filter gtselect hands to cfitsio uses 0.9 times the radius asked for. It builds fine,
                    the keywords still say the radius asked for, and fewer events are selected: science
                    verification must catch it.
"""
from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import git

from release_manager.config import PROJECT_ROOT
from release_manager.errors import UsageError

UPSTREAM = "https://github.com/fermi-lat/"
UMBRELLA = "ScienceTools"
FIXTURE_TAG = "v2.4.0-subset1"
WHEN = "2026-08-04T12:00:00+00:00"   # the umbrella snapshot's date (PROVENANCE.md)
DEFAULT_SOURCES = PROJECT_ROOT.parent / "shared" / "sources" / "fermitools"
AUTHOR = {"GIT_AUTHOR_NAME": "relman fixture", "GIT_AUTHOR_EMAIL": "relman-fixture@example.org",
          "GIT_COMMITTER_NAME": "relman fixture", "GIT_COMMITTER_EMAIL": "relman-fixture@example.org"}


def packages_in_order(specs_dir: Path) -> List[str]:
    """The subset, in dependency order, as the spec's support files list it."""
    lines = (specs_dir / "files" / "sciencetools" / "packages.txt").read_text().splitlines()
    return [ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("#")]


def mirror_root(data_dir: Path) -> Path:
    return data_dir / "mirrors" / "fermi-lat"


def mirror_setting(data_dir: Path) -> str:
    """The RELMAN_GIT_MIRRORS value that points fermi-lat's URLs at these mirrors."""
    return f"{UPSTREAM}={mirror_root(data_dir)}/"


def _env(when: str) -> Dict[str, str]:
    return {**AUTHOR, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}


def _commit(repo: git.Repo, message: str, when: str = WHEN) -> str:
    with repo.git.custom_environment(**_env(when)):
        repo.git.commit("-q", "--allow-empty", "-m", message)
    return repo.head.commit.hexsha


def init_mirrors(data_dir: Path, specs_dir: Path, sources: Optional[Path] = None, echo=print,
                 l1_sources: Optional[Path] = None) -> Path:
    """Make (or complete) the mirrors; idempotent: existing repositories are kept as they are.
    The L1 makeFT1 packages and umbrella branches (release_manager/l1.py) are added when their bundles
    are there (l1_sources, default ../shared/sources/l1)."""
    root = _init_fermitools(data_dir, specs_dir, sources, echo)
    from release_manager import l1
    l1_dir = Path(l1_sources or l1.DEFAULT_L1_SOURCES)
    if l1_sources is not None or (l1_dir / "PROVENANCE.md").is_file():
        l1.init_l1(root, l1_dir, echo=echo)
    return root


def mirror_bundle(root: Path, sources: Path, name: str) -> str:
    """The bare mirror root/NAME.git made from sources/NAME.bundle (kept when it exists); its master's commit."""
    bundle = sources / f"{name}.bundle"
    dest = root / f"{name}.git"
    if not dest.exists():
        if not bundle.is_file():
            raise UsageError(f"{bundle}: missing; the mirror of {name} cannot be made")
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            git.Repo.clone_from(str(bundle), tmp / "r.git", bare=True)
            (tmp / "r.git").rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return git.Repo(dest).commit("master").hexsha


def _init_fermitools(data_dir: Path, specs_dir: Path, sources: Optional[Path], echo) -> Path:
    sources = Path(sources or DEFAULT_SOURCES)
    if not (sources / "PROVENANCE.md").is_file():
        raise UsageError(f"{sources}: not the Fermitools sources folder (no PROVENANCE.md); give --sources "
                         "../shared/sources/fermitools")
    root = mirror_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    pins = {name: mirror_bundle(root, sources, name) for name in packages_in_order(specs_dir)}
    umbrella = root / f"{UMBRELLA}.git"
    if umbrella.exists():
        have = git.Repo(umbrella)
        if {"master", *DATASUBSELECTOR_CHANGES} <= {h.name for h in have.heads} and \
                FIXTURE_TAG in [t.name for t in have.tags]:
            echo(f"mirrors in {root} already exist ({len(pins)} packages and {UMBRELLA}.git)")
            return root
        shutil.rmtree(umbrella)   # made by an older relman: its fixture branches are remade
    _make_umbrella(umbrella, sources, pins, root)
    echo(f"mirrors of {len(pins)} fermi-lat packages and {UMBRELLA}.git (tag {FIXTURE_TAG}, branches master, "
         f"{', '.join(DATASUBSELECTOR_CHANGES)}) in {root}")
    echo(f"build from them with RELMAN_GIT_MIRRORS='{mirror_setting(data_dir)}'")
    return root


def _make_umbrella(dest: Path, sources: Path, pins: Dict[str, str], root: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".umbrella-", dir=root))
    try:
        work = tmp / UMBRELLA
        with tarfile.open(sources / "ScienceTools-buildfiles.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        if not (work / "CMakeLists.txt").is_file():
            raise UsageError(f"{sources}/ScienceTools-buildfiles.tar.gz: no {UMBRELLA}/CMakeLists.txt inside")
        repo = git.Repo.init(work, initial_branch="master")
        repo.git.add("-A")
        # Each package a gitlink at its pin, as upstream; .gitmodules is upstream's (it names all 50).
        for name, sha in pins.items():
            repo.git.update_index("--add", "--cacheinfo", f"160000,{sha},src/{name}")
        _commit(repo, f"{UMBRELLA} umbrella (build files of 3a626c4a) with the gtselect/gtmktime/gtbin subset pinned")
        with repo.git.custom_environment(**_env(WHEN)):
            repo.git.tag("-a", FIXTURE_TAG, "-m", "the Fermitools subset, fixture release")
        # branches pinning a changed dataSubselector
        for branch, (sub_branch, path, old, new, message) in DATASUBSELECTOR_CHANGES.items():
            sub_sha = _sub_commit(root / "dataSubselector.git", tmp, sub_branch, path, old, new, message)
            repo.git.checkout("-q", "-b", branch, "master")
            repo.git.update_index("--cacheinfo", f"160000,{sub_sha},src/dataSubselector")
            _commit(repo, f"pin dataSubselector {sub_branch}", "2026-08-05T12:00:00+00:00")
        repo.git.checkout("-q", "master")
        git.Repo.clone_from(str(work), tmp / "bare.git", bare=True, no_hardlinks=True)
        bare = git.Repo(tmp / "bare.git")
        bare.git.fetch("-q", str(work), "+refs/heads/*:refs/heads/*")
        bare.git.remote("remove", "origin")
        (tmp / "bare.git").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# umbrella branch -> (dataSubselector branch, file, text replaced, replacement, commit message)
DATASUBSELECTOR_CHANGES = {
    "leaf-change": ("relman-leaf-change", "src/Cuts.cxx", None,
                    "// relman fixture: a comment-only change (leaf-change)\n", "Cuts.cxx: comment only"),
    "broken-selection": ("relman-broken-selection", "src/SkyConeCut.cxx",
                         '<< dec << ") < " << m_radius;', '<< dec << ") < " << m_radius*0.9;',
                         "SkyConeCut.cxx: the cone filter uses 0.9 times the radius (a deliberate bug)"),
}


def _sub_commit(bare: Path, tmp: Path, branch: str, path: str, old: Optional[str], new: str, message: str) -> str:
    """A commit on a branch of dataSubselector changing one line of one file (old=None: append new)."""
    repo = git.Repo(bare)
    if branch in [h.name for h in repo.heads]:
        return repo.commit(branch).hexsha
    work = git.Repo.clone_from(str(bare), tmp / f"dataSubselector-{branch}")
    f = Path(work.working_tree_dir) / path
    text = f.read_text()
    if old is None:
        text += new
    else:
        if text.count(old) != 1:
            raise UsageError(f"dataSubselector {path}: the line to change ({old!r}) is not there once")
        text = text.replace(old, new)
    f.write_text(text)
    work.git.add("-A")
    _commit(work, f"{message} (relman fixture)", "2026-08-05T12:00:00+00:00")
    work.git.push("-q", "origin", f"HEAD:refs/heads/{branch}")
    return work.head.commit.hexsha
