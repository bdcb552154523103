"""The local stack script is idempotent; build contexts are exactly a commit's tree, normalised."""
from __future__ import annotations

import subprocess
import tarfile

import git
import pytest

from release_manager.config import PROJECT_ROOT
from release_manager.errors import UsageError
from release_manager.sources import SourceRepo, build_context


def test_local_stack_up_again_changes_nothing():
    r = subprocess.run([str(PROJECT_ROOT / "scripts" / "local-stack"), "up"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing changed" in r.stdout
    s = subprocess.run([str(PROJECT_ROOT / "scripts" / "local-stack"), "status"], capture_output=True, text=True)
    assert s.returncode == 0 and "engine: up" in s.stdout and "registry: up" in s.stdout


def test_context_is_the_commit_tree_normalised(demo_repo, tmp_path):
    repo = SourceRepo(str(demo_repo), tmp_path / "cache")
    rev = repo.resolve("v1.0.0")
    assert rev.kind == "tag" and rev.version == "v1.0.0"
    buf, n = build_context(repo, rev.commit, {"Dockerfile": "FROM scratch\n"})
    with tarfile.open(fileobj=buf) as tar:
        members = tar.getmembers()
    files = {m.name for m in members if m.isfile()}
    tree = {f"src/{b.path}" for b in git.Repo(demo_repo).commit(rev.commit).tree.traverse() if b.type == "blob"}
    assert files == tree | {"Dockerfile"}
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
    assert (tarfile.open(fileobj=build_context(repo, rev.commit, {"Dockerfile": "FROM scratch\n"})[0]).getmembers()
            .__len__() == len(members))
    # the same commit always gives the same bytes: the engine's layer cache stays valid
    assert build_context(repo, rev.commit, {})[0].getvalue() == build_context(repo, rev.commit, {})[0].getvalue()


def test_branch_and_commit_refs(demo_repo, tmp_path):
    repo = SourceRepo(str(demo_repo), tmp_path / "cache")
    head = repo.resolve("main")
    assert head.kind == "branch" and head.version.startswith("main-g")
    by_id = repo.resolve(head.commit[:12])
    assert by_id.commit == head.commit and by_id.kind == "commit"
    assert {"v1.0.0", "v1.1.0"} <= set(repo.tags_matching(r"^v\d+\.\d+\.\d+$"))


def test_missing_repository(tmp_path):
    with pytest.raises(UsageError, match="cannot open the repository"):
        SourceRepo(str(tmp_path / "nope"), tmp_path / "cache", "image_specs/x.yaml").resolve("v1")
