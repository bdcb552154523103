"""Sources with git submodules, on the real Fermitools mirrors made from ../shared/sources/fermitools:
pins, mirrors, the layered build context, build keys, and the errors a user can meet."""
from __future__ import annotations

import shutil
import tarfile

import git
import pytest

from release_manager import fermitools
from release_manager.build import build_key
from release_manager.config import PROJECT_ROOT, load_settings
from release_manager.errors import UsageError
from release_manager.plan import make_plan
from release_manager.render import render_dockerfile, support_files
from release_manager.sources import SourceRepo, build_context, join_relative, validate_submodule_url

from conftest import SHARED

UMBRELLA_URL = "https://github.com/fermi-lat/ScienceTools.git"


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory):
    data = tmp_path_factory.mktemp("mirrors-data")
    fermitools.init_mirrors(data, PROJECT_ROOT / "image_specs", SHARED / "sources" / "fermitools", echo=lambda m: None)
    return data


def _settings(data):
    return load_settings(data_dir=data, git_mirrors=fermitools.mirror_setting(data))


def _repo(data, tmp_path=None):
    s = _settings(data)
    return SourceRepo(s.mirror_url(UMBRELLA_URL), data / "git-cache", "sciencetools.yaml", upstream=UMBRELLA_URL,
                      mirror=s.mirror_url)


def _subs(specs):
    return specs.get("sciencetools").spec.source.submodules


def test_mirrors_are_idempotent_and_pin_the_bundles(mirrors):
    root = fermitools.mirror_root(mirrors)
    before = git.Repo(root / "ScienceTools.git").commit("master").hexsha
    lines = []
    fermitools.init_mirrors(mirrors, PROJECT_ROOT / "image_specs", SHARED / "sources" / "fermitools", echo=lines.append)
    assert "already exist" in lines[0]
    assert git.Repo(root / "ScienceTools.git").commit("master").hexsha == before
    # fixed authors and dates: every machine gets the same umbrella commit (hence the same build keys)
    other = mirrors.parent / "again"
    fermitools.init_mirrors(other, PROJECT_ROOT / "image_specs", SHARED / "sources" / "fermitools", echo=lambda m: None)
    assert git.Repo(fermitools.mirror_root(other) / "ScienceTools.git").commit("master").hexsha == before
    shutil.rmtree(other)


def test_revision_lists_pins_with_upstream_urls(mirrors, specs):
    rev = _repo(mirrors).resolve(fermitools.FIXTURE_TAG, _subs(specs))
    assert rev.kind == "tag" and rev.url == UMBRELLA_URL
    assert [s.path for s in rev.submodules] == list(_subs(specs))
    ape = rev.submodules[0]
    assert ape.url == "https://github.com/fermi-lat/ape.git"
    assert ape.commit.startswith("7e2edb885e71")   # the snapshot commit of PROVENANCE.md


def test_context_holds_each_submodule_tree_in_its_layer(mirrors, specs, tmp_path):
    plan = make_plan(specs, "sciencetools", "debian12-local")
    repo = _repo(mirrors)
    rev = repo.resolve(fermitools.FIXTURE_TAG, _subs(specs))
    buf, n = build_context(repo, rev.commit, {"Dockerfile": "FROM scratch\n"}, submodules=rev.submodules,
                           layers=plan.layers)
    names = tarfile.open(fileobj=buf).getnames()
    assert "src/CMakeLists.txt" in names and "src/.gitmodules" in names
    assert "layers/src/dataSubselector/src/Cuts.cxx" in names
    assert "layers/src/irfs/caldb/CALDB/software/tools/alias_config.fits" in names
    assert not any(x.startswith("src/src/ape") for x in names), "a layered package is not copied twice"
    # submodules the spec does not ask for stay out, like uninitialised ones
    assert not any(x.startswith(("src/src/Likelihood", "layers/src/Likelihood")) for x in names)
    assert n > 1500   # about 1,600 files of the 14 packages and the umbrella
    # the same inputs give the same bytes (the engine's layer cache depends on it)
    again, _ = build_context(repo, rev.commit, {"Dockerfile": "FROM scratch\n"}, submodules=rev.submodules,
                             layers=plan.layers)
    assert buf.getvalue() == again.getvalue()


def _key(specs, rev, plan=None):
    plan = plan or make_plan(specs, "sciencetools", "debian12-local")
    return build_key(render_dockerfile(plan), support_files(plan), rev, "sha256:" + "0" * 64,
                     plan.target("runtime"))


def test_build_key_changes_with_a_pin_and_only_then(mirrors, specs):
    repo = _repo(mirrors)
    master = repo.resolve("master", _subs(specs))
    leaf = repo.resolve("leaf-change", _subs(specs))
    changed = [a.path for a, b in zip(master.submodules, leaf.submodules) if a.commit != b.commit]
    assert changed == ["src/dataSubselector"]
    assert _key(specs, master) != _key(specs, leaf)
    assert _key(specs, master) == _key(specs, repo.resolve("master", _subs(specs)))
    # a new commit in a submodule's repository that the umbrella does not pin changes nothing
    sub = git.Repo(fermitools.mirror_root(mirrors) / "ape.git")
    work = git.Repo.clone_from(sub.git_dir, mirrors / "ape-work")
    (mirrors / "ape-work" / "NEWS").write_text("unpinned\n")
    work.git.add("-A")
    work.git.commit("-qm", "unpinned", author="t <t@example.org>")
    work.git.push("-q", "origin", "HEAD:refs/heads/unpinned")
    assert _key(specs, repo.resolve("master", _subs(specs))) == _key(specs, master)


def _umbrella_branch(mirrors, name, edit):
    """A branch of the mirror umbrella made by edit(work_repo)."""
    bare = fermitools.mirror_root(mirrors) / "ScienceTools.git"
    work = git.Repo.clone_from(str(bare), mirrors / f"work-{name}")
    work.git.checkout("-q", "-b", name)
    edit(work)
    work.git.commit("-qm", name, author="t <t@example.org>")
    work.git.push("-q", "origin", f"{name}:refs/heads/{name}")


def test_missing_pinned_commit_names_the_submodule_and_commit(mirrors, specs):
    bogus = "1234567890abcdef1234567890abcdef12345678"
    _umbrella_branch(mirrors, "bogus-pin", lambda w: w.git.update_index("--cacheinfo", f"160000,{bogus},src/hoops"))
    repo = _repo(mirrors)
    rev = repo.resolve("bogus-pin", _subs(specs))
    with pytest.raises(UsageError) as e:
        build_context(repo, rev.commit, {}, submodules=rev.submodules)
    assert "submodule src/hoops" in str(e.value) and bogus in str(e.value)
    assert "mirror of https://github.com/fermi-lat/hoops.git" in str(e.value)


def test_unreachable_submodule_repository_is_named(mirrors, specs, tmp_path):
    s = load_settings(data_dir=mirrors, git_mirrors={"https://github.com/fermi-lat/ScienceTools.git":
                                                     str(fermitools.mirror_root(mirrors) / "ScienceTools.git"),
                                                     "https://github.com/fermi-lat/": str(tmp_path / "nowhere") + "/"})
    repo = SourceRepo(s.mirror_url(UMBRELLA_URL), tmp_path / "cache", "sciencetools.yaml", upstream=UMBRELLA_URL,
                      mirror=s.mirror_url)
    rev = repo.resolve("master", ["src/ape"])
    with pytest.raises(UsageError) as e:
        build_context(repo, rev.commit, {}, submodules=rev.submodules)
    assert "submodule src/ape" in str(e.value) and "nowhere/ape.git" in str(e.value)


def test_bad_submodule_urls_and_paths_are_refused(mirrors, specs):
    def evil(w):
        gm = w.working_tree_dir + "/.gitmodules"
        text = open(gm).read().replace("url = https://github.com/fermi-lat/tip.git", "url = ext::sh -c touch% /tmp/x")
        open(gm, "w").write(text)
        w.git.add(".gitmodules")
    _umbrella_branch(mirrors, "evil-url", evil)
    repo = _repo(mirrors)
    with pytest.raises(UsageError, match=r"src/tip: submodule URL 'ext::sh"):
        repo.resolve("evil-url", ["src/tip"])
    with pytest.raises(UsageError, match="not a submodule"):
        repo.resolve("master", ["cmake"])
    with pytest.raises(UsageError, match="no such path"):
        repo.resolve("master", ["src/Likelihood2"])
    for bad in ("-oProxyCommand=x", "https://ex ample.org/x.git", "ext::sh", ""):
        with pytest.raises(UsageError):
            validate_submodule_url(bad, "t")
    assert join_relative("https://github.com/fermi-lat/ScienceTools.git", "../ape.git") == \
        "https://github.com/fermi-lat/ape.git"


def test_mirror_setting_forms():
    s = load_settings(git_mirrors="https://github.com/fermi-lat/=/srv/mirror/,https://github.com/=/srv/gh/")
    assert s.mirror_url("https://github.com/fermi-lat/ape.git") == "/srv/mirror/ape.git"   # longest prefix wins
    assert s.mirror_url("https://github.com/other/x.git") == "/srv/gh/other/x.git"
    assert s.mirror_url("https://gitlab.example.org/x.git") == "https://gitlab.example.org/x.git"
    from release_manager.errors import UsageError as UE
    with pytest.raises(UE, match="RELMAN_GIT_MIRRORS"):
        import os
        os.environ["RELMAN_GIT_MIRRORS"] = "no-equals-sign"
        try:
            load_settings()
        finally:
            del os.environ["RELMAN_GIT_MIRRORS"]


def test_platform_override_is_explicit_and_labelled(specs):
    prod = make_plan(specs, "sciencetools")
    local = make_plan(specs, "sciencetools", "debian12-local")
    assert prod.platform_override is None and prod.platform_name == "rhel7"
    assert local.platform_override == "rhel7->debian12-local"
    labels = dict(local.static_labels(local.target("runtime")))
    assert labels["relman.platform"] == "debian12-local" and labels["relman.platform.production"] == "rhel7"
    assert labels["relman.platform.override"] == "rhel7->debian12-local"
    # the rhel7 build still stops on its unknown package names; the Debian one has none left
    assert prod.placeholders() and not local.placeholders()
    assert "libclhep-dev" in local.build_packages and "libclhep2.1v5" in local.runtime_packages
    with pytest.raises(UsageError, match="no such platform"):
        make_plan(specs, "sciencetools", "rhel9")


def test_host_build_never_replaces_a_folder_it_did_not_make(mirrors, specs, tmp_path):
    """`relman host-build --prefix` pointing at a folder with other content is refused, untouched."""
    from release_manager.build import Builder
    from release_manager.hostbuild import host_build
    s = load_settings(data_dir=mirrors, git_mirrors=fermitools.mirror_setting(mirrors),
                      platform_overrides={"rhel7": "debian12-local"})
    precious = tmp_path / "usr"
    (precious / "bin").mkdir(parents=True)
    (precious / "bin" / "tool").write_text("keep me\n")
    with pytest.raises(UsageError, match="is not a relman host build"):
        host_build(Builder(s, specs, echo=lambda m: None), "sciencetools", fermitools.FIXTURE_TAG, precious,
                   echo=lambda m: None)
    assert (precious / "bin" / "tool").read_text() == "keep me\n"
