"""The L1 makeFT1 spec without the engine: what it shares with ScienceTools, its pinned ROOT, the
refusal of a non-reproducible makeFT1 workload, merged support folders, the mirrors' L1 branches."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import git
import pytest
import yaml

from release_manager.config import PROJECT_ROOT
from release_manager.errors import SpecError
from release_manager.plan import make_plan
from release_manager.render import render_dockerfile
from release_manager.spec import load_specs
from release_manager.verify.runner import map_argv

from conftest import SHARED

SPECS_DIR = PROJECT_ROOT / "image_specs"


@pytest.fixture(scope="module")
def specs_here():
    return load_specs(SPECS_DIR)


def _copy_specs(tmp_path: Path, edit) -> Path:
    """image_specs with l1-makeft1.yaml changed by edit(dict) (the others left out but sciencetools, which it
    extends)."""
    out = tmp_path / "specs"
    out.mkdir(parents=True)
    shutil.copy(SPECS_DIR / "platforms.yaml", out)
    shutil.copy(SPECS_DIR / "sciencetools.yaml", out)
    shutil.copytree(SPECS_DIR / "files", out / "files")
    data = yaml.safe_load((SPECS_DIR / "l1-makeft1.yaml").read_text())
    edit(data)
    (out / "l1-makeft1.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_same_layers_in_the_same_order_on_the_same_base(specs_here):
    st = make_plan(specs_here, "sciencetools", "debian12-local")
    l1 = make_plan(specs_here, "l1-makeft1", "debian12-local")
    st_paths = [p for p, _ in st.layers]
    l1_paths = [p for p, _ in l1.layers]
    assert l1_paths[:len(st_paths)] == st_paths
    assert l1_paths[len(st_paths):] == ["src/xmlBase", "src/evtUtils", "src/fitsGen", "src/fitsGenApps",
                                        "src/evtClassDefs"]
    assert l1.base_ref == st.base_ref and l1.runtime_packages == st.runtime_packages
    assert l1.runtime_extra_packages and not st.runtime_extra_packages
    # the base stage is the same up to the user: those layers are the same in both runtime images
    def base_lines(plan):
        text = render_dockerfile(plan)
        stage = text.split("FROM ", 1)[1].split("\nENV ", 1)[0]
        return [ln for ln in stage.splitlines() if ln.startswith("RUN ")]
    st_base, l1_base = base_lines(st), base_lines(l1)
    assert l1_base[:len(st_base)] == st_base and len(l1_base) == len(st_base) + 1
    # xerces-c and the C headers; the C++ headers are staged into the prefix (no libstdc++-12-dev)
    assert "libxerces-c3.2" in l1_base[-1] and "libc6-dev" in l1_base[-1] and "libstdc++-12-dev" not in l1_base[-1]
    # the 14 packages keep their CMake targets (packages.txt lines repeated in l1-packages.txt)
    def lines(rel):
        return [ln.split() for ln in l1.files[rel].splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines("l1-packages.txt")[:14] == lines("packages.txt")
    # ScienceTools' find modules and compatibility headers are merged in, unchanged
    for rel in ("cmake/FindCLHEP.cmake", "cmake/Findf2c.cmake", "include/f2c/f2c.h"):
        assert l1.files[rel] == st.files[rel]


def test_built_on_the_sciencetools_images(specs_here):
    """extends: the build starts from ScienceTools' full image (its build tree: only the L1 layers are built, in it)
    and the runtime image is its runtime image plus L1's packages and what L1's build added to the prefix."""
    st = make_plan(specs_here, "sciencetools", "debian12-local")
    l1 = make_plan(specs_here, "l1-makeft1", "debian12-local")
    assert l1.upstream is not None and l1.upstream.name == "sciencetools" and st.upstream is None
    assert [p for p, _ in l1.own_layers] == ["src/xmlBase", "src/evtUtils", "src/fitsGen", "src/fitsGenApps",
                                             "src/evtClassDefs"]
    assert l1.build_dir == st.source_dir == st.build_dir == "/usr/src/sciencetools"
    # the CMake cache of ScienceTools' tree names its support folder (-I.../include): the same path, same flags
    assert l1.files_dir == st.files_dir and dict(l1.build_env)["RELMAN_FILES"] == st.files_dir
    assert l1.extra_build_packages == ["libxerces-c-dev", "python3-venv"]
    text = render_dockerfile(l1)
    stages = {chunk.split(" AS ", 1)[1].split("\n", 1)[0]: chunk for chunk in text.split("\nFROM ")[1:]}
    assert stages["build"].startswith("${RELMAN_UPSTREAM_FULL} AS build")
    assert stages["runtime"].startswith("${RELMAN_UPSTREAM_RUNTIME} AS runtime")
    assert "ARG RELMAN_UPSTREAM_FULL=sciencetools:v2.4.0-subset1-full" in text
    assert "ARG RELMAN_UPSTREAM_RUNTIME=sciencetools:v2.4.0-subset1-runtime" in text
    build = stages["build"]
    assert "COPY layers/src/xmlBase/ /usr/src/sciencetools/src/xmlBase/" in build
    assert "layers/src/facilities/" not in build and "COPY src/ " not in build   # built in the full image already
    assert build.index("prefix-delta.sh snapshot") < build.index("src/xmlBase") < build.index("prefix-delta.sh collect")
    assert "split-debug.sh /relman-prefix/opt/fermitools /usr/lib/debug" in build
    runtime = stages["runtime"]
    assert "COPY --from=build /relman-prefix/ /" in runtime and "COPY --from=build /opt/fermitools/" not in runtime
    assert "libxerces-c3.2" in runtime and "USER root" in runtime and runtime.rstrip().count("USER sas") == 1
    # debug's sources go where they were compiled (gdb's source paths)
    assert "COPY layers/src/facilities/ /relman-payload/usr/src/sciencetools/src/facilities/" in stages["debug-payload"]


@pytest.mark.parametrize("edit, path, words", [
    (lambda d: d["extends"].update(package="nosuch"), "extends.package", "no package named 'nosuch'"),
    (lambda d: d["extends"].update(package="l1-makeft1"), "extends.package", "cannot extend itself"),
    (lambda d: d["extends"].update(ref="v1; rm -rf /"), "extends.ref", "not a valid git ref"),
    (lambda d: d.update(prefix="/opt/l1"), "prefix", "differs from sciencetools's '/opt/fermitools'"),
    (lambda d: d["os_packages"]["apt"]["runtime"].append("libxerces-c3.2"), "os_packages.apt.runtime",
     "(more go in runtime_extra)"),
    (lambda d: d["build"]["layers"]["paths"].remove("src/tip"), "build.layers.paths",
     "must start with sciencetools's 14 layer(s) in the same order"),
])
def test_a_spec_that_does_not_fit_the_images_it_extends_is_refused(tmp_path, edit, path, words):
    with pytest.raises(SpecError) as exc:
        load_specs(_copy_specs(tmp_path, edit))
    msg = str(exc.value)
    assert "l1-makeft1.yaml" in msg and path in msg and words in msg, msg


def test_root_pinned_by_version_and_hash(specs_here):
    plan = make_plan(specs_here, "l1-makeft1", "debian12-local")
    req = plan.files["l1-root-requirements.txt"]
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", req, re.M))
    assert pins == {"root": "0.1a12", "numpy": "2.4.6"}
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}\b", req)) == 2
    layer = plan.files["l1-build-layer.sh"]
    assert "--require-hashes" in layer and "mock_site_packages" in layer
    # installed at build time only: nothing in the run-time environment points at an index or pip
    env = " ".join(v for _, v in plan.runtime_env) + " ".join(plan.spec.run.environment.values())
    assert "pip" not in env and "http" not in env


def test_makeft1_without_tstart_tstop_is_refused(tmp_path):
    def drop(data):
        cmd = data["verification"]["workload"][1]["command"]
        data["verification"]["workload"][1]["command"] = [a for a in cmd if not a.startswith("tstop=")]
    with pytest.raises(SpecError) as exc:
        load_specs(_copy_specs(tmp_path, drop))
    msg = str(exc.value)
    assert "l1-makeft1.yaml" in msg and "'makeft1-gamma'" in msg and "without tstop" in msg
    for kw in ("TSTART", "TSTOP", "GTI START", "GTI STOP"):
        assert kw in msg
    # with both given (the spec as it is) the same folder loads
    loaded = load_specs(_copy_specs(tmp_path / "ok", lambda d: None))
    assert loaded.get("l1-makeft1").spec.verification.determinism.runs == 2


def test_merged_support_folders_must_not_share_a_name(tmp_path):
    specs = _copy_specs(tmp_path, lambda d: None)
    (specs / "files" / "l1-makeft1" / "packages.txt").write_text("# the same name as in files/sciencetools\n")
    with pytest.raises(SpecError) as exc:
        load_specs(specs)
    assert "build.files" in str(exc.value) and "packages.txt also in an earlier folder" in str(exc.value)


def test_host_argv_maps_the_image_prefix(tmp_path):
    argv = ["makeFT1", "rootFile=/inputs/gamma", "fitsFile=/outputs/g.fits",
            "TCuts=/opt/fermitools/refdata/fermi/evtClassDefs/data/pass8.0_Transient_cuts_L1", "tstart=0"]
    host = tmp_path / "host-build" / "l1"
    (host / "bin").mkdir(parents=True)
    (host / "bin" / "makeFT1").write_text("")
    got = map_argv(argv, {"gamma": tmp_path / "g.root"}, tmp_path / "out", host / "bin", "/opt/fermitools")
    assert got == [str(host / "bin" / "makeFT1"), f"rootFile={tmp_path / 'g.root'}",
                   f"fitsFile={tmp_path / 'out'}/g.fits",
                   f"TCuts={host}/refdata/fermi/evtClassDefs/data/pass8.0_Transient_cuts_L1", "tstart=0"]
    # without a prefix (the other specs) nothing else changes
    assert map_argv(argv, {}, tmp_path, None)[3] == argv[3]


def test_mirrors_get_the_l1_branches(tmp_path):
    from release_manager import fermitools, l1
    root = fermitools.init_mirrors(tmp_path, SPECS_DIR, SHARED / "sources" / "fermitools", echo=lambda m: None)
    umbrella = git.Repo(root / "ScienceTools.git")
    st_tag = umbrella.commit(fermitools.FIXTURE_TAG).hexsha
    tree = umbrella.commit(l1.L1_TAG).tree
    pins = {e.path: e.hexsha for e in tree["src"] if e.type == "submodule"}
    assert set(pins) == {f"src/{n}" for n in fermitools.packages_in_order(SPECS_DIR)} | {f"src/{n}" for n in l1.PACKAGES}
    for name in l1.PACKAGES:
        assert pins[f"src/{name}"] == git.Repo(root / f"{name}.git").commit("master").hexsha
    gm = tree[".gitmodules"].data_stream.read().decode()
    assert "url = https://github.com/fermi-lat/fitsGenApps.git" in gm
    assert "url = https://github.com/fermi-lat/evtClassDefs.git" in gm
    assert umbrella.commit(l1.L1_TAG).parents[0].hexsha == st_tag     # ScienceTools' tag is untouched
    change = umbrella.commit(l1.FITSGEN_BRANCH)
    changed = umbrella.git.diff_tree("--name-only", "-r", umbrella.commit(l1.L1_TAG).hexsha, change.hexsha)
    assert changed.split() == ["src/fitsGen"]
    # idempotent, same commit ids a second time
    before = {h.name: h.commit.hexsha for h in umbrella.heads}
    fermitools.init_mirrors(tmp_path, SPECS_DIR, SHARED / "sources" / "fermitools", echo=lambda m: None)
    assert {h.name: h.commit.hexsha for h in git.Repo(root / "ScienceTools.git").heads} == before
    assert before["l1"] == git.Repo(root / "ScienceTools.git").commit(l1.L1_TAG).hexsha


WRITER = """
import sys, numpy as np
from astropy.io import fits
out, tstart = sys.argv[1], sys.argv[2]
t = fits.BinTableHDU.from_columns([fits.Column(name="TIME", format="D", array=np.arange(5.0)),
                                   fits.Column(name="EVENT_ID", format="J", array=np.arange(5))], name="EVENTS")
t.header["TSTART"] = float(np.frombuffer(np.random.bytes(8))[0]) if tstart == "garbage" else float(tstart)
fits.HDUList([fits.PrimaryHDU(), t]).writeto(out)
"""


@pytest.mark.parametrize("tstart,same", [("0", True), ("garbage", False)])
def test_determinism_flags_what_differs_between_two_runs(tmp_path, tstart, same):
    """rerun_checks on a real program run twice (a FITS writer whose TSTART is random bytes when asked)."""
    import subprocess
    import sys
    from release_manager.spec.model import Verification
    from release_manager.verify.determinism import rerun_checks
    ver = Verification.model_validate({
        "workload": [{"name": "write", "command": ["writer", "/outputs/x-ft1.fits", tstart]}],
        "outputs": ["*-ft1.fits"], "reference": {"kind": "stored", "path": str(tmp_path)},
        "determinism": {"runs": 2},
        "rules": [{"pattern": "*-ft1.fits", "comparator": "fits", "ignore_keywords": ["DATE", "CHECKSUM", "DATASUM"],
                   "floats": {"rtol": 0.0, "atol": 0.0}}]})

    class Ran:
        def __init__(self, rc):
            self.exit_code = rc

    def run_step(st, outdir: Path):
        argv = [sys.executable, "-c", WRITER] + [a.replace("/outputs", str(outdir)) for a in st.command[1:]]
        return Ran(subprocess.run(argv).returncode)

    def fresh(p: Path) -> Path:
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
        return p
    first = fresh(tmp_path / "outputs" / "image")
    assert run_step(ver.workload[0], first).exit_code == 0
    checks = rerun_checks(ver, run_step, first, tmp_path, fresh, echo=lambda m: None)
    assert checks and all(c.test == "determinism" for c in checks)
    failed = [c for c in checks if c.failed]
    if same:
        assert not failed and checks[0].file == "x-ft1.fits"
    else:
        assert failed and all(c.file == "x-ft1.fits" for c in failed)
        assert any("TSTART" in (c.message + c.column) for c in failed), [c.message for c in failed]


def _root_modules():
    """files/l1-makeft1/l1-root-modules.py (a build-time script, not a package module)."""
    import importlib.util
    path = SPECS_DIR / "files" / "l1-makeft1" / "l1-root-modules.py"
    spec = importlib.util.spec_from_file_location("l1_root_modules", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_root_modules_kept_by_startup_staged_libraries_and_imports(tmp_path):
    """Kept: what ROOT loads at start-up, the module of each staged library, and their imports (the names
    of .pcm files inside each .pcm); the others leave the lib folder and the module map, and the stale
    modules.idx goes."""
    rm = _root_modules()
    lib = tmp_path / "lib"
    lib.mkdir()
    pcm = {"Core": b"std.pcm libc.pcm", "std": b"", "libc": b"", "Tree": b"\0Core.pcm\0Net.pcm\0", "Net": b"",
           "XMLIO": b"Core.pcm", "RooFit": b"Core.pcm Tree.pcm", "Gui": b"Core.pcm"}
    for name, body in pcm.items():
        (lib / f"{name}.pcm").write_bytes(b"CPCH" + body)
    (lib / "libXMLIO.so").write_bytes(b"\x7fELF")          # a staged library: its module stays
    (lib / "modules.idx").write_bytes(b"BCGI")
    mmap = tmp_path / "ROOT.modulemap"
    mmap.write_text('module ROOT_Config {\n  module "RConfig.h" { header "RConfig.h" export * }\n}\n'
                    'module "RooFit" {\n  module "RooAbsPdf.h" { header "RooAbsPdf.h" export * }\n'
                    '  link "libRooFit.so"\n  export *\n}\n'
                    'module "Tree" { header "TTree.h" export * }\n'
                    'module "Gui" {\n  requires cplusplus\n  module "TGFrame.h" { header "TGFrame.h" }\n}\n')
    assert rm.main(str(lib), str(mmap)) == 0
    assert {p.stem for p in lib.glob("*.pcm")} == {"Core", "std", "libc", "Tree", "Net", "XMLIO"}
    assert not (lib / "modules.idx").exists()
    text = mmap.read_text()
    assert "RooFit" not in text and "Gui" not in text and "TGFrame" not in text
    assert 'module "Tree" { header "TTree.h" export * }' in text and 'module "RConfig.h"' in text


def test_other_pins_of_a_shared_submodule_are_refused_before_any_build(tmp_path):
    """L1's build runs in ScienceTools' full image, on the objects of ScienceTools' pins: an L1 ref that pins a
    package both umbrellas have at another commit is refused, naming it (no image built, none needed)."""
    from release_manager import fermitools, l1
    from release_manager.build import Builder
    from release_manager.config import load_settings
    from release_manager.errors import UsageError
    root = fermitools.init_mirrors(tmp_path, SPECS_DIR, SHARED / "sources" / "fermitools", echo=lambda m: None)
    settings = load_settings(data_dir=tmp_path, git_mirrors=fermitools.mirror_setting(tmp_path),
                             platform_overrides={"rhel7": "debian12-local"})
    b = Builder(settings, load_specs(SPECS_DIR), echo=lambda m: None)
    plan, _, revision, _, _ = b.prepare("l1-makeft1", l1.L1_TAG)
    up = b._upstream(plan, revision, "sha256:" + "0" * 64)      # the fixture's pins: the same
    assert up.package == "sciencetools" and set(up.keys) == {"runtime", "full"}
    # an L1 tag that pins tip at another commit (one more on top of ScienceTools' pin, in tip's mirror)
    umbrella = git.Repo(root / "ScienceTools.git")
    pin = next(e.hexsha for e in umbrella.commit(l1.L1_TAG).tree["src"] if e.path == "src/tip")
    tip = git.Repo.clone_from(str(root / "tip.git"), tmp_path / "tip")
    tip.git.checkout("-q", "-b", "other", pin)
    with tip.git.custom_environment(**fermitools.AUTHOR):
        tip.git.commit("-q", "--allow-empty", "-m", "another commit")
    other = tip.head.commit.hexsha
    tip.git.push("-q", "origin", "other")
    work = git.Repo.clone_from(str(root / "ScienceTools.git"), tmp_path / "work")
    work.git.checkout("-q", l1.L1_TAG)
    work.git.update_index("--cacheinfo", f"160000,{other},src/tip")
    with work.git.custom_environment(**fermitools.AUTHOR):
        work.git.commit("-q", "-m", "tip at another commit")
        work.git.tag("v2.4.0-l1-othertip")
    work.git.push("-q", "origin", "v2.4.0-l1-othertip")
    plan, _, revision, _, _ = b.prepare("l1-makeft1", "v2.4.0-l1-othertip")
    with pytest.raises(UsageError) as exc:
        b._upstream(plan, revision, "sha256:" + "0" * 64)
    msg = str(exc.value)
    assert "l1-makeft1.yaml" in msg and "extends sciencetools v2.4.0-subset1" in msg, msg
    assert f"src/tip {other[:12]} (theirs {pin[:12]})" in msg and "src/facilities" not in msg, msg


def test_specs_list_names_what_a_spec_is_built_on():
    import json

    from click.testing import CliRunner

    from release_manager.cli import main
    r = CliRunner().invoke(main, ["specs", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["package"]: row for row in json.loads(r.output)}
    assert rows["l1-makeft1"]["extends"] == {"package": "sciencetools", "ref": "v2.4.0-subset1"}
    assert rows["sciencetools"]["extends"] is None
    text = CliRunner().invoke(main, ["specs", "list"]).output
    assert next(ln for ln in text.splitlines() if ln.startswith("l1-makeft1")).endswith("on sciencetools v2.4.0-subset1")
