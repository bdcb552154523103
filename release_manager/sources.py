"""Package sources through gitpython: resolve a ref to a commit, tar that commit's tree.

The build context is exactly the commit's tree (under src/) plus relman's rendered files,
with owner, group and times normalised so the engine's layer cache stays valid.
"""
from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import git

from release_manager.errors import UsageError

# A git ref as a user may give it: no shell or option metacharacters, no '..', no leading '-'.
REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")


def validate_ref(ref: str) -> str:
    if not isinstance(ref, str) or not REF_RE.match(ref) or ref.endswith((".lock", "/", ".")):
        raise UsageError(f"ref {ref!r} is not a valid git ref: letters, digits and ._/+- only, "
                         "starting with a letter or digit, no '..', at most 200 characters")
    return ref


def resolve_url(url: str, data_dir: Path) -> str:
    return url.replace("{data_dir}", str(data_dir))


@dataclass(frozen=True)
class Revision:
    url: str
    ref: str
    commit: str
    tree: str          # git tree id: identifies every source file of the commit
    kind: str          # tag | branch | commit
    version: str       # what goes in org.opencontainers.image.version


class SourceRepo:
    """A package's git repository: a local path used in place, or a URL cloned bare into a cache."""

    def __init__(self, url: str, cache_dir: Path, spec_file: str = "spec"):
        self.url = url
        self.spec_file = spec_file
        if url.startswith("<placeholder:"):
            raise UsageError(f"{spec_file}: source.git is still a placeholder ({url}); set the real URL first")
        local = Path(url[len("file://"):] if url.startswith("file://") else url)
        try:
            if local.is_absolute() and local.exists():
                self.repo = git.Repo(local)
            else:
                dest = cache_dir / re.sub(r"[^A-Za-z0-9._-]", "_", url)
                if dest.exists():
                    self.repo = git.Repo(dest)
                    self.repo.git.fetch("--tags", "--prune", "origin", "+refs/heads/*:refs/heads/*")
                else:
                    self.repo = git.Repo.clone_from(url, dest, bare=True)
        except (git.GitError, OSError) as exc:
            raise UsageError(f"{spec_file}: source.git {url}: cannot open the repository: "
                             f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from None

    def resolve(self, ref: str) -> Revision:
        validate_ref(ref)
        repo = self.repo
        kind = "commit"
        if ref in [t.name for t in repo.tags]:
            kind = "tag"
        elif ref in [h.name for h in repo.heads]:
            kind = "branch"
        try:
            commit = repo.commit(ref)
        except (git.BadName, ValueError, git.GitCommandError):
            tags = sorted(t.name for t in repo.tags)[-10:]
            heads = sorted(h.name for h in repo.heads)
            raise UsageError(f"ref {ref!r} not found in {self.url} (branches: {', '.join(heads) or 'none'}; "
                             f"latest tags: {', '.join(tags) or 'none'})") from None
        if kind == "commit" and not re.match(r"^[0-9a-f]{7,40}$", ref):
            raise UsageError(f"ref {ref!r} is neither a tag, a branch nor a commit id of {self.url}")
        version = ref if kind == "tag" else f"{ref}-g{commit.hexsha[:12]}" if kind == "branch" else commit.hexsha[:12]
        return Revision(self.url, ref, commit.hexsha, commit.tree.hexsha, kind, version)

    def tags_matching(self, pattern: str):
        rx = re.compile(pattern)
        return sorted(t.name for t in self.repo.tags if rx.search(t.name))

    def add_to_tar(self, tar: tarfile.TarFile, commit: str, prefix: str = "src") -> int:
        """Add the commit's tree under prefix/ with normalised metadata; returns the number of files."""
        n = 0
        tree = self.repo.commit(commit).tree
        dirs = set()
        for item in tree.traverse():
            path = f"{prefix}/{item.path}"
            if item.type == "tree":
                dirs.add(path)
                tar.addfile(_info(path, tarfile.DIRTYPE, 0o755))
            elif item.type == "blob":
                mode = item.mode
                # one object-store read gives size and content (item.size would ask git a second time)
                stream = self.repo.odb.stream(item.binsha)
                if mode == 0o120000:  # symlink: the blob holds the target
                    ti = _info(path, tarfile.SYMTYPE, 0o777)
                    ti.linkname = stream.read().decode()
                    tar.addfile(ti)
                else:
                    ti = _info(path, tarfile.REGTYPE, 0o755 if mode & 0o111 else 0o644)
                    ti.size = stream.size
                    tar.addfile(ti, stream)
                n += 1
            # submodules (type 'submodule') are not part of the tree's content
        return n


def _info(name: str, kind, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def build_context(repo: SourceRepo, commit: str, files: Dict[str, str], out: Optional[io.BufferedIOBase] = None):
    """A tar of the commit's tree under src/ plus the rendered files; returns (fileobj, file count)."""
    buf = out or io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("src", tarfile.DIRTYPE, 0o755))
        n = repo.add_to_tar(tar, commit)
        for rel in sorted(files):
            data = files[rel].encode()
            ti = _info(rel, tarfile.REGTYPE, 0o755 if rel.endswith(".sh") else 0o644)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf, n + len(files)
