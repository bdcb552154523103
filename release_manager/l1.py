"""The L1 makeFT1 sources in the local fermi-lat mirrors (made by `relman fermitools init`).

The bundles of ../shared/sources/l1 (xmlBase, evtUtils, fitsGen, fitsGenApps, evtClassDefs) become bare
mirrors beside the Fermitools ones, and the umbrella gets branches of its own, so the ScienceTools
fixture tag and branches stay exactly as they are:
  l1               master plus the five packages as gitlinks at the bundles' commits; tag L1_TAG.
                   fitsGenApps and evtClassDefs are not submodules of the upstream umbrella: this branch
                   adds them to .gitmodules with their fermi-lat URLs.
  l1-fitsgen-change  pins a fitsGen commit whose only change is a comment in a source file (the
                   rebuild benchmark: fitsGen's layer and those after it rebuild, nothing else).
Fixed authors and dates, as for the Fermitools mirrors: every machine gets the same commit ids.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

import git

from release_manager.config import PROJECT_ROOT
from release_manager.errors import UsageError

DEFAULT_L1_SOURCES = PROJECT_ROOT.parent / "shared" / "sources" / "l1"
L1_TAG = "v2.4.0-l1"
L1_BRANCH = "l1"
FITSGEN_BRANCH = "l1-fitsgen-change"
WHEN = "2026-08-06T12:00:00+00:00"
# order of the gitlinks; the build order is files/l1-makeft1/l1-packages.txt
PACKAGES = ("xmlBase", "evtUtils", "fitsGen", "fitsGenApps", "evtClassDefs")
NOT_UPSTREAM_SUBMODULES = ("fitsGenApps", "evtClassDefs")
FITSGEN_CHANGE = ("src/Ft1File.cxx", "// relman fixture: a comment-only change (l1-fitsgen-change)\n")


def _env(when: str) -> Dict[str, str]:
    from release_manager.fermitools import AUTHOR
    return {**AUTHOR, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}


def _commit(repo: git.Repo, message: str, when: str = WHEN) -> str:
    with repo.git.custom_environment(**_env(when)):
        repo.git.commit("-q", "--allow-empty", "-m", message)
    return repo.head.commit.hexsha


def has_l1(umbrella: Path) -> bool:
    repo = git.Repo(umbrella)
    return {L1_BRANCH, FITSGEN_BRANCH} <= {h.name for h in repo.heads} and L1_TAG in [t.name for t in repo.tags]


def init_l1(root: Path, sources: Optional[Path] = None, echo: Callable[[str], None] = print) -> List[str]:
    """Mirrors of the L1 packages and the umbrella's L1 branches (idempotent). root: the fermi-lat
    mirror folder that already holds ScienceTools.git. Returns the L1 package names."""
    from release_manager.fermitools import UMBRELLA, mirror_bundle
    sources = Path(sources or DEFAULT_L1_SOURCES)
    if not (sources / "PROVENANCE.md").is_file():
        raise UsageError(f"{sources}: not the L1 sources folder (no PROVENANCE.md); give --l1-sources "
                         "../shared/sources/l1")
    pins = {name: mirror_bundle(root, sources, name) for name in PACKAGES}
    umbrella = root / f"{UMBRELLA}.git"
    if has_l1(umbrella):
        return list(PACKAGES)
    tmp = Path(tempfile.mkdtemp(prefix=".umbrella-l1-", dir=root))
    try:
        work = git.Repo.clone_from(str(umbrella), tmp / UMBRELLA)
        work.git.checkout("-q", "-B", L1_BRANCH, "origin/master")
        wt = Path(work.working_tree_dir)
        gm = (wt / ".gitmodules").read_text()
        for name in NOT_UPSTREAM_SUBMODULES:
            if f"path = src/{name}\n" not in gm:
                gm += f'[submodule "src/{name}"]\n\tpath = src/{name}\n\turl = https://github.com/fermi-lat/{name}.git\n'
        (wt / ".gitmodules").write_text(gm)
        work.git.add(".gitmodules")
        for name in PACKAGES:
            work.git.update_index("--add", "--cacheinfo", f"160000,{pins[name]},src/{name}")
        _commit(work, "L1 makeFT1: xmlBase, evtUtils, fitsGen, fitsGenApps and evtClassDefs pinned "
                      "(fitsGenApps and evtClassDefs added to .gitmodules)")
        with work.git.custom_environment(**_env(WHEN)):
            work.git.tag("-a", L1_TAG, "-m", "the L1 makeFT1 sources, fixture release")
        sub = _fitsgen_commit(root / "fitsGen.git", tmp)
        work.git.checkout("-q", "-b", FITSGEN_BRANCH, L1_BRANCH)
        work.git.update_index("--cacheinfo", f"160000,{sub},src/fitsGen")
        _commit(work, "pin fitsGen relman-l1-change", "2026-08-07T12:00:00+00:00")
        work.git.push("-q", "origin", f"+{L1_BRANCH}:refs/heads/{L1_BRANCH}",
                      f"+{FITSGEN_BRANCH}:refs/heads/{FITSGEN_BRANCH}", f"refs/tags/{L1_TAG}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(f"L1 mirrors of {', '.join(PACKAGES)} and {UMBRELLA}.git branches {L1_BRANCH} (tag {L1_TAG}), "
         f"{FITSGEN_BRANCH} in {root}")
    return list(PACKAGES)


def _fitsgen_commit(bare: Path, tmp: Path) -> str:
    """A commit on fitsGen's branch relman-l1-change that appends a comment to one source file."""
    branch = "relman-l1-change"
    repo = git.Repo(bare)
    if branch in [h.name for h in repo.heads]:
        return repo.commit(branch).hexsha
    work = git.Repo.clone_from(str(bare), tmp / "fitsGen-change")
    path, text = FITSGEN_CHANGE
    f = Path(work.working_tree_dir) / path
    f.write_text(f.read_text() + text)
    work.git.add("-A")
    _commit(work, "Ft1File.cxx: comment only (relman fixture)", "2026-08-07T12:00:00+00:00")
    work.git.push("-q", "origin", f"HEAD:refs/heads/{branch}")
    return work.head.commit.hexsha
