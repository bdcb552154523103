"""Package sources through gitpython: resolve a ref to a commit, tar that commit's tree.

The build context is exactly the commit's tree (under src/) plus relman's rendered files,
with owner, group and times normalised so the engine's layer cache stays valid. Submodules the
spec asks for are part of the tree, each at the commit the repository pins; parts built one layer
at a time (build.layers) go under layers/<path>/ instead of src/.
"""
from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import git

from release_manager.errors import UsageError

from release_manager.validate import REF_RE, ref as validate_ref  # noqa: F401 - re-exported


# A submodule URL from a repository's .gitmodules: a URL of a known scheme, scp-like user@host:path, an
# absolute path, or a relative ../path; no whitespace, no leading '-' (git would read an option), no ext::.
SUBMODULE_URL_RE = re.compile(r"^(?:(?:https?|git|ssh|file)://[^\s]+|[\w.-]+@[\w.-]+:[^\s]+|/[^\s]+|\.\.?/[^\s]+)\Z")


def resolve_url(url: str, data_dir: Path) -> str:
    return url.replace("{data_dir}", str(data_dir))


def validate_submodule_url(url: str, where: str) -> str:
    if not SUBMODULE_URL_RE.match(url) or url.startswith("-") or "::" in url.split("/")[0]:
        raise UsageError(f"{where}: submodule URL {url!r} is not allowed: give an https://, git://, ssh://, file:// "
                         "URL, user@host:path, an absolute path or a relative ../path, without spaces")
    return url


def join_relative(base: str, rel: str) -> str:
    """Resolve a relative submodule URL (../ape.git) against the superproject's URL, as git does."""
    base = base.rstrip("/")
    while rel.startswith(("../", "./")):
        if rel.startswith("./"):
            rel = rel[2:]
            continue
        rel = rel[3:]
        base = base.rsplit("/", 1)[0] if "/" in base else base
    return f"{base}/{rel}"


@dataclass(frozen=True)
class Submodule:
    path: str          # in the superproject's tree
    url: str           # upstream URL, as the superproject names it (relative ones resolved)
    commit: str        # the commit the superproject pins


@dataclass(frozen=True)
class Revision:
    url: str
    ref: str
    commit: str
    tree: str          # git tree id: identifies every source file of the commit (and each submodule pin)
    kind: str          # tag | branch | commit
    version: str       # what goes in org.opencontainers.image.version
    submodules: Tuple[Submodule, ...] = ()


class SourceRepo:
    """A package's git repository: a local path used in place, or a URL cloned bare into a cache."""

    def __init__(self, url: str, cache_dir: Path, spec_file: str = "spec", upstream: Optional[str] = None,
                 mirror: Optional[Callable[[str], str]] = None):
        """url: where to fetch from (a mirror, possibly); upstream: the URL the spec names, which the
        labels carry; mirror maps a submodule's upstream URL to where to fetch it."""
        self.url = upstream or url
        self.fetch_url = url
        self.cache_dir = cache_dir
        self.mirror = mirror or (lambda u: u)
        self.spec_file = spec_file
        self._layer_roots: set = set()
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
            via = f" (mirror of {upstream})" if upstream and upstream != url else ""
            raise UsageError(f"{spec_file}: source.git {url}{via}: cannot open the repository: "
                             f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from None

    def resolve(self, ref: str, submodules: Sequence[str] = ()) -> Revision:
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
        if kind == "commit" and not re.match(r"^[0-9a-f]{7,40}\Z", ref):
            raise UsageError(f"ref {ref!r} is neither a tag, a branch nor a commit id of {self.url}")
        version = ref if kind == "tag" else f"{ref}-g{commit.hexsha[:12]}" if kind == "branch" else commit.hexsha[:12]
        return Revision(self.url, ref, commit.hexsha, commit.tree.hexsha, kind, version,
                        self.submodules(commit.hexsha, submodules))

    def submodules(self, commit: str, paths: Sequence[str]) -> Tuple[Submodule, ...]:
        """The pins of the asked submodules at commit: cheap (the tree and .gitmodules only), so an unchanged
        superproject is decided without opening any submodule repository."""
        if not paths:
            return ()
        tree = self.repo.commit(commit).tree
        try:
            raw = self.repo.git.config("--blob", f"{commit}:.gitmodules", "-z", "--get-regexp",
                                       r"^submodule\..*\.(path|url)$")
        except git.GitCommandError:
            raw = ""
        names: Dict[str, Dict[str, str]] = {}
        for entry in filter(None, raw.split("\0")):
            key, _, value = entry.partition("\n")
            name, _, attr = key[len("submodule."):].rpartition(".")
            names.setdefault(name, {})[attr] = value
        by_path = {v["path"]: v.get("url") for v in names.values() if "path" in v}
        out = []
        for path in paths:
            where = f"{self.spec_file}: source.submodules: {path}"
            try:
                item = tree[path]
            except KeyError:
                raise UsageError(f"{where}: no such path in {self.url} at {commit[:12]}") from None
            if item.type != "submodule":
                raise UsageError(f"{where}: not a submodule (a {item.type}) in {self.url} at {commit[:12]}")
            url = by_path.get(path)
            if not url:
                raise UsageError(f"{where}: pinned at {item.hexsha[:12]} but .gitmodules of {commit[:12]} gives no URL")
            validate_submodule_url(url, where)
            if url.startswith(("./", "../")):
                url = join_relative(self.url, url)
            out.append(Submodule(path, url, item.hexsha))
        return tuple(out)

    def open_submodule(self, sub: Submodule) -> "SourceRepo":
        fetch = self.mirror(sub.url)
        try:
            repo = SourceRepo(fetch, self.cache_dir, self.spec_file, upstream=sub.url, mirror=self.mirror)
        except UsageError as exc:
            raise UsageError(f"submodule {sub.path} (commit {sub.commit[:12]}): {exc}") from None
        try:
            repo.repo.commit(sub.commit)
        except (git.BadName, ValueError, git.GitCommandError):
            via = f" (mirror of {sub.url})" if fetch != sub.url else ""
            raise UsageError(f"submodule {sub.path}: commit {sub.commit} is not in {fetch}{via}; the superproject "
                             "pins a commit its submodule repository does not have (update the mirror)") from None
        return repo

    def tags_matching(self, pattern: str):
        rx = re.compile(pattern)
        return sorted(t.name for t in self.repo.tags if rx.search(t.name))

    def add_to_tar(self, tar: tarfile.TarFile, commit: str, prefix: str = "src",
                   submodules: Iterable[Submodule] = (), layers: Sequence[Tuple[str, str]] = ()) -> int:
        """Add the commit's tree under prefix/ with normalised metadata; returns the number of files.

        submodules: added at their paths from their own repositories; layers: (path, folder) pairs whose
        content goes under folder/ instead of prefix/path/.
        """
        subs = {s.path: s for s in submodules}

        def place(path: str) -> str:
            for lpath, folder in layers:
                if path == lpath or path.startswith(lpath + "/"):
                    return folder + path[len(lpath):]
            return f"{prefix}/{path}"

        self._layer_roots = {folder for _, folder in layers}
        for folder in sorted(self._layer_roots):  # each layer folder exists, whatever its content
            tar.addfile(_info(folder, tarfile.DIRTYPE, 0o755))
        return self._add_tree(tar, self.repo.commit(commit).tree, "", place, subs)

    def _add_tree(self, tar, tree, base: str, place, subs: Dict[str, Submodule]) -> int:
        n = 0
        for item in tree.traverse():
            rel = f"{base}{item.path}"
            path = place(rel)
            if item.type == "submodule":
                sub = subs.get(rel)
                if sub is not None:
                    if path not in self._layer_roots:
                        tar.addfile(_info(path, tarfile.DIRTYPE, 0o755))
                    repo = self.open_submodule(sub)
                    repo._layer_roots = self._layer_roots
                    n += repo._add_tree(tar, repo.repo.commit(sub.commit).tree, rel + "/", place, {
                        s.path[len(rel) + 1:]: s for s in subs.values() if s.path.startswith(rel + "/")})
                continue   # a submodule the build does not ask for stays out, as an uninitialised one
            if item.type == "tree":
                if path not in self._layer_roots:   # those are added once, up front
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
        return n


def _info(name: str, kind, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def build_context(repo: SourceRepo, commit: str, files: Dict[str, str], out: Optional[io.BufferedIOBase] = None,
                  submodules: Iterable[Submodule] = (), layers: Sequence[Tuple[str, str]] = ()):
    """A tar of the commit's tree under src/ plus the rendered files; returns (fileobj, file count)."""
    buf = out or io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("src", tarfile.DIRTYPE, 0o755))
        if layers:
            tar.addfile(_info("layers", tarfile.DIRTYPE, 0o755))
            for folder in sorted({f.rsplit("/", i)[0] for _, f in layers for i in range(1, f.count("/"))}):
                tar.addfile(_info(folder, tarfile.DIRTYPE, 0o755))
        n = repo.add_to_tar(tar, commit, submodules=submodules, layers=layers)
        for rel in sorted(files):
            data = files[rel].encode()
            ti = _info(rel, tarfile.REGTYPE, 0o755 if rel.endswith(".sh") else 0o644)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf, n + len(files)
