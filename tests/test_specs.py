"""`relman specs check` on the real specs and on a corpus of malformed ones."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from release_manager.config import PROJECT_ROOT
from release_manager.spec import load_specs
from release_manager.spec.model import parse_size

SPECS = PROJECT_ROOT / "image_specs"
BAD = Path(__file__).parent / "bad_specs"
SAS_PACKAGES = {"fastcopy", "halfpipe", "isoc-monitoring", "glastrelease", "datamonitoring", "sciencetools", "asp"}


def relman(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "release_manager", *args], capture_output=True, text=True, cwd=cwd)


def test_real_specs_pass():
    r = relman("specs", "check")
    assert r.returncode == 0, r.stderr
    loaded = load_specs(SPECS)
    assert SAS_PACKAGES | {"evtselect"} <= set(loaded.packages)
    assert "8 package spec(s)" in r.stdout or f"{len(loaded.packages)} package spec(s)" in r.stdout


def test_platform_facts():
    loaded = load_specs(SPECS)
    labels = {n: p.builder_label for n, p in loaded.platforms.items()}
    assert labels["rhel5"] == "rhel5-builder" and labels["rhel6"] == "rhel6-builder" and labels["rhel7"] == "rhel7-builder"
    for name in ("rhel5", "rhel6", "rhel7"):
        p = loaded.platforms[name]
        assert p.end_of_life and all("vault.centos.org" in r.baseurl or "archive" in r.baseurl for r in p.repositories.yum)
    gr = loaded.packages["glastrelease"].spec
    assert gr.build_platform == "rhel6"
    assert {"digi", "recon-merit"} <= {c.name for c in gr.components}
    assert loaded.packages["sciencetools"].spec.jenkins.nightly is not None
    st = loaded.packages["sciencetools"]
    assert len(st.spec.source.submodules) == 14 and st.files["packages.txt"], "the Fermitools subset with its support files"
    assert st.spec.placeholders("apt") == [] and st.spec.placeholders("yum"), "buildable here, rhel7 names still open"
    assert loaded.packages["fastcopy"].spec.build_platform == "rhel5"
    assert set(loaded.packages["fastcopy"].spec.run_platforms) == {"rhel5", "rhel6"}


def _expectations(path: Path):
    exp = path.with_suffix(".expect")
    if exp.exists():
        field, msg = exp.read_text().splitlines()[:2]
        return field, msg
    head = path.read_text().splitlines()[:2]
    return head[0].split(": ", 1)[1].strip(), head[1].split(": ", 1)[1].strip()


BAD_FILES = sorted(BAD.glob("*.yaml"))


def test_corpus_is_large_enough():
    assert len(BAD_FILES) >= 25


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda p: p.stem)
def test_bad_spec_is_refused_clearly(bad, tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    shutil.copy(SPECS / "platforms.yaml", d)
    target = d / bad.name
    shutil.copy(bad, target)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = relman("specs", "check", "--specs-dir", str(d), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    field, msg = _expectations(bad)
    err = r.stderr
    assert str(target) in err, err
    assert msg in err, f"expected {msg!r} in:\n{err}"
    if field:
        assert f": {field}" in err, f"expected field {field!r} in:\n{err}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing may be written"


def test_line_numbers_are_reported(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    shutil.copy(SPECS / "platforms.yaml", d)
    shutil.copy(BAD / "10-bad-tag-regex.yaml", d)
    r = relman("specs", "check", "--specs-dir", str(d))
    # the tag pattern is on line 7 of the file (2 comment lines + 5)
    assert "10-bad-tag-regex.yaml:7: source.tag_pattern" in r.stderr, r.stderr


def test_two_specs_with_the_same_name(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    shutil.copy(SPECS / "platforms.yaml", d)
    shutil.copy(SPECS / "evtselect.yaml", d / "a.yaml")
    shutil.copy(SPECS / "evtselect.yaml", d / "b.yaml")
    r = relman("specs", "check", "--specs-dir", str(d))
    assert r.returncode == 2
    assert "b.yaml: name: package 'evtselect' is already defined in" in r.stderr and "a.yaml" in r.stderr


def test_broken_platforms_file(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    text = (SPECS / "platforms.yaml").read_text().replace("package_manager: apt", "package_manager: pacman")
    (d / "platforms.yaml").write_text(text)
    r = relman("specs", "check", "--specs-dir", str(d))
    assert r.returncode == 2
    assert "platforms.debian12-local.package_manager" in r.stderr and "'yum' or 'apt'" in r.stderr


def test_unknown_package_for_render():
    r = relman("render", "nosuchpkg")
    assert r.returncode == 2
    assert "no package named 'nosuchpkg'" in r.stderr and "evtselect" in r.stderr


def test_unknown_variant_for_render():
    r = relman("render", "evtselect", "--variant", "slim")
    assert r.returncode == 2
    assert "has no variant or component 'slim'" in r.stderr and "runtime" in r.stderr


@pytest.mark.parametrize("text,size", [("800MB", 800 * 10**6), ("1.5GiB", int(1.5 * 2**30)), ("1 GB", 10**9), (42, 42)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_channels_of_a_package_without_any(tmp_path):
    # no database, no registry: RELMAN_DB_URL points at a folder that does not exist, and it must not be opened
    env_db = f"sqlite:///{tmp_path}/missing/relman.db"
    r = subprocess.run([sys.executable, "-m", "release_manager", "channels", "sciencetools"], capture_output=True,
                       text=True, env={**os.environ, "RELMAN_DB_URL": env_db})
    assert r.returncode == 0, r.stderr
    assert "sciencetools: its spec declares no channel (spec field `channels`)" in r.stdout
    assert not (tmp_path / "missing").exists()
