"""The real Fermitools subset through relman, on the real engine and registry: built from the mirrors of
the fermi-lat repositories (submodules), checked, pushed, and run as a farm runs it."""
from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from release_manager import engine
from release_manager.build import Builder
from release_manager.checks import ARBITRARY_UID
from release_manager.db import for_settings, queries, record_build
from release_manager.fermitools import FIXTURE_TAG

from conftest import FERMI

pytestmark = pytest.mark.engine
CRAB_FT1 = FERMI / "ft1" / "p8v3-crab-1day-ft1.fits.gz"
CRAB_FT2 = FERMI / "ft1" / "p8v3-crab-1day-ft2.fits.gz"


def test_variants_built_checked_pushed(sciencetools_build, specs, api):
    from release_manager.checks import check_image
    from release_manager.plan import make_plan
    assert set(sciencetools_build) == {"runtime", "debug", "full"}
    for target, r in sciencetools_build.items():
        assert r.pushed and r.digest.startswith("sha256:"), target
        assert r.labels["org.opencontainers.image.source"] == "https://github.com/fermi-lat/ScienceTools.git"
        assert r.labels["relman.platform.override"] == "rhel7->debian12-local"
        assert r.platform == "debian12-local" and r.production_platform == "rhel7"
        if r.status == "built":
            assert all(c["ok"] for c in r.checks), r.checks
    # the checks, run again here on the images (a warm engine may have skipped the build itself)
    plan = make_plan(specs, "sciencetools", "debian12-local")
    layers = {t: [x["digest"] for x in r.layers] for t, r in sciencetools_build.items()}
    ran = {t: check_image(api, plan, plan.target(t), sciencetools_build[t].image_id, layers["runtime"], layers[t])
           for t in ("runtime", "debug")}
    for t, results in ran.items():
        assert all(c.ok for c in results), [c.as_dict() for c in results if not c.ok]
    names = {c.name for c in ran["runtime"]}
    assert {"entrypoint", "no-package-cache", "no-debug-info", "no-compiler", "no-sources"} <= names
    assert "one-layer-over-runtime" in {c.name for c in ran["debug"]}
    gdb = next(c.as_dict() for c in ran["debug"] if c.name == "gdb-finds-symbols")
    # main of gtselect and functions of three shared libraries resolve to source lines
    for want in ("ballistic_main.cxx", "commonUtilities.cxx", "IFileSvc.cxx", "Loader.cxx"):
        assert want in gdb["detail"], gdb["detail"]
    rt, full = sciencetools_build["runtime"].size, sciencetools_build["full"].size
    print(f"\nsizes: runtime {rt / 1e6:.0f} MB, debug {sciencetools_build['debug'].size / 1e6:.0f} MB, "
          f"full {full / 1e6:.0f} MB, runtime/full {rt / full:.2f}")
    assert rt < 220e6 and rt / full < 0.3


def test_override_recorded_in_the_database(settings, sciencetools_build):
    from release_manager.db import migrate
    db = for_settings(settings)
    migrate.upgrade(db)
    record_build(sciencetools_build["runtime"].as_dict(), db=db, actor="test")
    with db.read() as s:
        d = queries.image_detail(s, sciencetools_build["runtime"].digest)
    assert d["platform"] == "debian12-local" and d["production_platform"] == "rhel7"


def _farm_run(api, image, argv, work, inputs):
    """As Apptainer runs it on a farm: an arbitrary UID, read-only root, tmpfs /tmp, no HOME."""
    binds = {str(p): {"bind": f"/inputs/{p.name}", "mode": "ro"} for p in inputs}
    binds[str(work)] = {"bind": "/work", "mode": "rw"}
    rc, out = engine.run(api, image, argv, user=ARBITRARY_UID, binds=binds, workdir="/work", through_entrypoint=True,
                         read_only=True, tmpfs={"/tmp": "rw,size=64m"}, environment={"HOME": "/nonexistent"})
    assert rc == 0, f"{argv[0]} exit {rc}:\n{out}"
    return out


def test_three_tools_give_the_documented_counts(api, sciencetools_build, tmp_path):
    image = sciencetools_build["runtime"].image_id
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o777)
    inputs = [CRAB_FT1, CRAB_FT2]
    ft1, ft2 = (f"/inputs/{p.name}" for p in inputs)
    _farm_run(api, image, ["gtselect", f"infile={ft1}", "outfile=sel.fits", "ra=83.63", "dec=22.01", "rad=10",
                           "tmin=INDEF", "tmax=INDEF", "emin=100", "emax=300000", "zmax=90", "evclass=128",
                           "evtype=3"], work, inputs)
    with fits.open(work / "sel.fits") as f:
        assert len(f["EVENTS"].data) == 672
        assert len(f["GTI"].data) == 15
    _farm_run(api, image, ["gtmktime", f"scfile={ft2}", "filter=(DATA_QUAL>0)&&(LAT_CONFIG==1)", "roicut=yes",
                           "evfile=sel.fits", "outfile=mkt.fits"], work, inputs)
    with fits.open(work / "mkt.fits") as f:
        assert len(f["EVENTS"].data) == 671
        gti = f["GTI"].data
        assert len(gti) == 14
        assert float(np.sum(gti["STOP"] - gti["START"])) == pytest.approx(31959.9, abs=0.1)
        tstart, tstop = f["EVENTS"].header["TSTART"], f["EVENTS"].header["TSTART"] + 86400
    common = ["evfile=mkt.fits", "scfile=NONE", "coordsys=CEL", "xref=83.63", "yref=22.01", "axisrot=0", "proj=AIT"]
    _farm_run(api, image, ["gtbin", "algorithm=CMAP", "outfile=cmap.fits", "nxpix=100", "nypix=100", "binsz=0.2",
                           *common], work, inputs)
    _farm_run(api, image, ["gtbin", "algorithm=CCUBE", "outfile=ccube.fits", "nxpix=50", "nypix=50", "binsz=0.2",
                           "ebinalg=LOG", "emin=100", "emax=300000", "enumbins=10", *common], work, inputs)
    _farm_run(api, image, ["gtbin", "algorithm=LC", "outfile=lc.fits", "tbinalg=LIN", f"tstart={tstart}",
                           f"tstop={tstop}", "dtime=3600", "evfile=mkt.fits", "scfile=NONE"], work, inputs)
    with fits.open(work / "cmap.fits") as f:
        assert f[0].data.shape == (100, 100) and int(f[0].data.sum()) == 671
    with fits.open(work / "ccube.fits") as f:
        assert f[0].data.shape == (10, 50, 50) and int(f[0].data.sum()) == 267
    with fits.open(work / "lc.fits") as f:
        assert len(f["RATE"].data) == 24 and int(f["RATE"].data["COUNTS"].sum()) == 671
    # nothing but the products was written to the working folder (parameter files went to /tmp)
    assert sorted(p.name for p in work.iterdir()) == ["ccube.fits", "cmap.fits", "lc.fits", "mkt.fits", "sel.fits"]


def test_entrypoint_is_the_same_in_every_package(api, sciencetools_build, demo_build):
    def answers(image, *args):
        rc, out = engine.run(api, image, list(args), user=ARBITRARY_UID, through_entrypoint=True, read_only=True)
        assert rc == 0, out
        return out
    st, demo = sciencetools_build["runtime"].image_id, demo_build["runtime"].image_id
    assert answers(st, "--help") == answers(demo, "--help").replace("evtselect", "sciencetools")
    keys = [[ln.split(":")[0] for ln in answers(img, "--version").splitlines()] for img in (st, demo)]
    assert keys[0] == keys[1] == ["package", "ref", "version", "commit", "variant", "platform", "build date"]
    assert "ref:        " + FIXTURE_TAG in answers(st, "--version")
    assert [ln.split()[0] for ln in answers(st, "--list").splitlines()] == ["gtselect", "gtmktime", "gtbin"]
    assert answers(demo, "--list").split()[0] == "evtselect"
    full = sciencetools_build["full"].image_id
    assert "variant:    full" in answers(full, "--version")


def test_unchanged_umbrella_is_skipped(st_settings, specs, api, sciencetools_build):
    results = Builder(st_settings, specs, echo=lambda m: None, api=api).build(
        "sciencetools", FIXTURE_TAG, ["runtime", "debug", "full"], push=True)
    assert [r.status for r in results] == ["skipped"] * 3
    assert [r.build_key for r in results] == [sciencetools_build[r.target].build_key for r in results]


def _fresh_leaf_pin(settings) -> str:
    """An umbrella branch pinning a dataSubselector commit that no engine has seen: a comment line unique
    to this run (the fixture's leaf-change may already sit in a warm layer cache)."""
    import uuid
    import git
    from release_manager.fermitools import mirror_root
    root = mirror_root(settings.data_dir)
    tag = uuid.uuid4().hex[:10]
    sub = git.Repo.clone_from(str(root / "dataSubselector.git"), root.parent / f"ds-{tag}")
    cuts = sub.working_tree_dir + "/src/Cuts.cxx"
    with open(cuts, "a") as f:
        f.write(f"// relman test {tag}\n")
    sub.git.commit("-qam", f"comment {tag}", author="t <t@example.org>")
    sub.git.push("-q", "origin", f"HEAD:refs/heads/test-{tag}")
    umbrella = git.Repo.clone_from(str(root / "ScienceTools.git"), root.parent / f"st-{tag}")
    umbrella.git.checkout("-q", "-b", f"leaf-{tag}", FIXTURE_TAG)
    umbrella.git.update_index("--cacheinfo", f"160000,{sub.head.commit.hexsha},src/dataSubselector")
    umbrella.git.commit("-qm", f"pin {tag}", author="t <t@example.org>")
    umbrella.git.push("-q", "origin", f"leaf-{tag}")
    return f"leaf-{tag}"


def test_leaf_change_rebuilds_only_the_last_layer(st_settings, specs, api, sciencetools_build):
    branch = _fresh_leaf_pin(st_settings)
    lines = []
    results = Builder(st_settings, specs, echo=lines.append, api=api).build("sciencetools", branch, ["runtime"])
    assert results[0].status == "built" and all(c["ok"] for c in results[0].checks)
    assert results[0].build_key != sciencetools_build["runtime"].build_key
    runs = [i for i, ln in enumerate(lines) if "build-layer.sh" in ln and ln.startswith("Step ")]
    cached = [i for i in runs if i + 1 < len(lines) and "Using cache" in lines[i + 1]]
    # the 13 packages before dataSubselector come from the layer cache; dataSubselector is compiled again
    assert len(runs) == 14 and len(cached) == 13, lines[-40:]
