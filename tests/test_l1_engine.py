"""The L1 makeFT1 image on the real engine and registry: built from the mirrors (ScienceTools' layers plus
the L1 packages, ROOT from PyPI), checked, run as a batch slot runs it (any UID, read-only root) on the
merit files, its FT1 rows checked against an independent reading of the merit tuples (uproot), verified
against the host build (with the determinism check), promoted to the tag L1 runs from."""
from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import uproot
from astropy.io import fits

from release_manager import engine
from release_manager.build import Builder
from release_manager.checks import FARM_RUN
from release_manager.l1 import L1_TAG

from conftest import FERMI

# the cold image build (runtime, debug, full) with the host build overlapped: 12.4 min on this 2-core machine
# under load (docs/l1.md); the timeout leaves room for a busier one.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(3600)]
MERIT = FERMI / "merit"
FILES = ("default", "gamma_5_gev_normal", "vertical_surface_muons")
EVT = "/opt/fermitools/refdata/fermi/evtClassDefs"
EXPECTED_ROWS = {"default": 0, "gamma_5_gev_normal": 5, "vertical_surface_muons": 0}


@pytest.fixture(scope="module")
def l1_host_build(st_settings, specs):
    """The host reference build (`relman host-build` with the image's recipe, ROOT's wheel in a venv),
    started in a thread before the image build so that the two overlap; joined by the verification."""
    from release_manager.hostbuild import ensure_host_reference
    done = {}

    def work():
        try:
            done["prefix"] = ensure_host_reference(st_settings, specs, "l1-makeft1", echo=lambda m: None)
        except Exception as exc:  # noqa: BLE001 - handed to the test that needs it
            done["error"] = exc
    t = threading.Thread(target=work, daemon=True)
    t.start()

    def wait():
        t.join()
        if "error" in done:
            raise done["error"]
        return done["prefix"]
    return wait


@pytest.fixture(scope="module")
def l1_build(l1_host_build, st_settings, specs, api):
    """l1-makeft1 at its fixture tag: runtime, debug and full, built once and pushed. {target: BuildResult}."""
    results = Builder(st_settings, specs, echo=lambda m: None, api=api).build(
        "l1-makeft1", L1_TAG, ["runtime", "debug", "full"], push=True)
    return {r.target: r for r in results}


def _argv(name: str, out: str, cut: str):
    return ["makeFT1", f"rootFile=/merit/{name}-merit.root", f"fitsFile=/out/{out}", f"TCuts={cut}",
            f"xml_classifier={EVT}/xml/EvtClassDefs_P8R0.xml", "evtclsmap=FT1EventClass", "evttypmap=none",
            f"dict_file={EVT}/data/pass8_FT1variables", "tstart=0", "tstop=17", "clobber=yes"]


@pytest.fixture(scope="module")
def ft1_products(api, l1_build, tmp_path_factory):
    """makeFT1 in the runtime image as UID 23456 on a read-only root (the farm's conditions), on the three
    merit files: L1 transient cuts, and every event. {(file, 'l1'|'all'): (exit, log, FT1 path)}."""
    out = tmp_path_factory.mktemp("l1-ft1")
    os.chmod(out, 0o777)    # the arbitrary UID writes here
    image = l1_build["runtime"].image_id
    binds = {str(MERIT): {"bind": "/merit", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}}
    got = {}
    for name in FILES:
        for kind, cut in (("l1", f"{EVT}/data/pass8.0_Transient_cuts_L1"), ("all", "EvtRun>0")):
            fname = f"{name}-{kind}.fits"
            rc, log = engine.run(api, image, _argv(name, fname, cut), binds=binds, workdir="/out", **FARM_RUN)
            got[(name, kind)] = (rc, log, out / fname)
    return got


def test_variants_built_checked_pushed(l1_build, specs, api, tmp_path_factory):
    from release_manager.checks import check_image
    from release_manager.plan import make_plan
    assert set(l1_build) == {"runtime", "debug", "full"}
    for target, r in l1_build.items():
        assert r.pushed and r.digest.startswith("sha256:"), target
        assert r.labels["relman.platform.override"] == "rhel7->debian12-local"
        if r.status == "built":     # the checks of the build itself (every variant, full included)
            assert all(c["ok"] for c in r.checks), (target, r.checks)
    plan = make_plan(specs, "l1-makeft1", "debian12-local")
    layers = {t: [x["digest"] for x in r.layers] for t, r in l1_build.items()}
    ran = {t: check_image(api, plan, plan.target(t), l1_build[t].image_id, layers["runtime"], layers[t])
           for t in ("runtime", "debug")}
    for t, results in ran.items():
        assert all(c.ok for c in results), [c.as_dict() for c in results if not c.ok]
    gdb = next(c.as_dict() for c in ran["debug"] if c.name == "gdb-finds-symbols")
    # makeFT1's main is st_app's (ballistic_main.cxx), which runs the application class of makeFT1.cxx
    for want in ("ballistic_main.cxx", "commonUtilities.cxx", "EventClass.cxx"):
        assert want in gdb["detail"], gdb["detail"]
    # the full image (build environment plus the software) runs makeFT1 as a batch slot would, too
    full = l1_build["full"].image_id
    rc, out = engine.run(api, full, ["--version"], **FARM_RUN)
    assert rc == 0 and "variant:    full" in out, out
    work = tmp_path_factory.mktemp("l1-full")
    os.chmod(work, 0o777)
    binds = {str(MERIT): {"bind": "/merit", "mode": "ro"}, str(work): {"bind": "/out", "mode": "rw"}}
    rc, log = engine.run(api, full, _argv("gamma_5_gev_normal", "full.fits", f"{EVT}/data/pass8.0_Transient_cuts_L1"),
                         binds=binds, workdir="/out", **FARM_RUN)
    assert rc == 0, log[-2000:]
    assert fits.getheader(work / "full.fits", "EVENTS")["NAXIS2"] == EXPECTED_ROWS["gamma_5_gev_normal"]
    rt = l1_build["runtime"].size
    print(f"\nsizes: runtime {rt / 1e6:.0f} MB, debug {l1_build['debug'].size / 1e6:.0f} MB, "
          f"full {l1_build['full'].size / 1e6:.0f} MB")
    assert rt <= plan.spec.size_budget["runtime"].max


def test_runtime_is_the_sciencetools_runtime_image_plus_layers(l1_build, sciencetools_build, api):
    """Built on ScienceTools' images (extends): every layer of its runtime image (base, OS packages, user, the
    Fermitools prefix, entrypoint) is the first of L1's, then L1's own: xerces-c and the C headers, what L1's
    build added to the prefix (makeFT1, its libraries not in ScienceTools', ROOT's run-time parts, data), the
    entrypoint. The Fermitools libraries makeFT1 links are ScienceTools' files, not copies."""
    st = [x["digest"] for x in sciencetools_build["runtime"].layers]
    l1 = [x["digest"] for x in l1_build["runtime"].layers]
    assert l1[:len(st)] == st and len(l1) == len(st) + 3, (st, l1)
    if l1_build["runtime"].status == "built":
        assert {"name": "shares-upstream-runtime", "ok": True} in [
            {k: c[k] for k in ("name", "ok")} for c in l1_build["runtime"].checks], l1_build["runtime"].checks
    # the prefix layer holds no file of ScienceTools' prefix: makeFT1 loads libfacilities.so from the layer below
    rc, out = engine.run(api, l1_build["runtime"].image_id,
                         ["sh", "-c", "ldd /opt/fermitools/bin/makeFT1 | grep -c 'not found'; "
                                      "ldd /opt/fermitools/bin/makeFT1 | grep -o '/opt/fermitools/lib/libfacilities.so'"])
    assert out.split()[:2] == ["0", "/opt/fermitools/lib/libfacilities.so"], out
    st_lib = engine.run(api, sciencetools_build["runtime"].image_id,
                        ["sha256sum", "/opt/fermitools/lib/libfacilities.so"])[1].split()[0]
    l1_lib = engine.run(api, l1_build["runtime"].image_id,
                        ["sha256sum", "/opt/fermitools/lib/libfacilities.so"])[1].split()[0]
    assert st_lib == l1_lib


def test_makeft1_documented_rows_any_uid_read_only(ft1_products):
    for name in FILES:
        for kind in ("l1", "all"):
            rc, log, path = ft1_products[(name, kind)]
            assert rc == 0, f"{name} {kind}: exit {rc}\n{log[-2000:]}"
            with fits.open(path) as h:
                rows = h["EVENTS"].header["NAXIS2"]
                want = 10 if kind == "all" else EXPECTED_ROWS[name]
                assert rows == want, (name, kind, rows)
                # explicit tstart/tstop: sane header times (makeFT1 writes tstop + 1)
                assert h["EVENTS"].header["TSTART"] == 0.0 and h["EVENTS"].header["TSTOP"] == 18.0


@pytest.fixture(scope="module")
def l1_cut_text(st_settings) -> str:
    """pass8.0_Transient_cuts_L1 as evtClassDefs' mirror holds it (the file the image stages)."""
    import git
    from release_manager.fermitools import mirror_root
    repo = git.Repo(mirror_root(st_settings.data_dir) / "evtClassDefs.git")
    return repo.commit("master").tree["data/pass8.0_Transient_cuts_L1"].data_stream.read().decode()


def _l1_cut(text: str, tree) -> np.ndarray:
    """The L1 cut evaluated with numpy on the merit leaves (independently of ROOT)."""
    expr = " ".join(ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    terms, depth, cur = [], 0, ""
    i = 0
    while i < len(expr):       # split on the top-level && (Python's & binds tighter than >)
        ch = expr[i]
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and expr.startswith("&&", i):
            terms.append(cur)
            cur, i = "", i + 2
            continue
        cur += ch
        i += 1
    terms.append(cur)
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expr)) - {"log10", "pow"}
    arrays = tree.arrays(sorted(names), library="np")
    ns = {"log10": np.log10, "pow": np.power, **{k: arrays[k].astype(float) for k in names}}
    mask = np.ones(tree.num_entries, dtype=bool)
    for t in terms:
        mask &= np.asarray(eval(t, {"__builtins__": {}}, ns), dtype=bool)   # noqa: S307 - the spec's own cut file
    return mask


def test_ft1_rows_match_an_independent_reading_of_the_merit(ft1_products, l1_cut_text):
    for name in FILES:
        tree = uproot.open(MERIT / f"{name}-merit.root")["MeritTuple"]
        leaves = tree.arrays(["FT1Energy", "EvtElapsedTime", "EvtEventId", "EvtRun"], library="np")
        in_time = (leaves["EvtElapsedTime"] >= 0) & (leaves["EvtElapsedTime"] <= 18)
        for kind, mask in (("l1", _l1_cut(l1_cut_text, tree) & in_time), ("all", (leaves["EvtRun"] > 0) & in_time)):
            _, _, path = ft1_products[(name, kind)]
            with fits.open(path) as h:
                ev = h["EVENTS"].data
                assert len(ev) == int(mask.sum()), (name, kind)
                np.testing.assert_array_equal(ev["ENERGY"], leaves["FT1Energy"][mask].astype(ev["ENERGY"].dtype))
                np.testing.assert_array_equal(ev["TIME"], leaves["EvtElapsedTime"][mask])
                np.testing.assert_array_equal(ev["EVENT_ID"], leaves["EvtEventId"][mask])
                np.testing.assert_array_equal(ev["RUN_ID"], leaves["EvtRun"][mask])
    assert EXPECTED_ROWS["gamma_5_gev_normal"] == int(_l1_cut(l1_cut_text, uproot.open(
        MERIT / "gamma_5_gev_normal-merit.root")["MeritTuple"]).sum())


@pytest.fixture(scope="module")
def l1_promoted(st_settings, specs, api, l1_build, l1_host_build, tmp_path_factory):
    """The spec's verification (image twice for determinism, host build once, FT1 compared by rule), recorded;
    then `relman promote --channel l1` promotes the verified runtime image (to a tag of this run's own: promoted
    tags are immutable and the registry outlives the session; removed at the end) and moves the channel L1
    runs from, `l1-makeft1:l1`, to it (channels move; it stays). Returns (verification, promotion report, tag)."""
    from release_manager.db import for_settings, migrate
    from release_manager.registry import Registry
    from release_manager.workflows import verification
    from release_manager.workflows.common import Context, record_result, untag
    from release_manager.workflows.promote import promote
    assert (l1_host_build() / "bin" / "makeFT1").is_file()
    db = for_settings(st_settings)
    migrate.upgrade(db)
    ctx = Context(st_settings, specs, echo=lambda m: None, api=api, db=db, actor="l1-test")
    r = l1_build["runtime"]
    image_pk = record_result(ctx, r.as_dict()).image
    work = tmp_path_factory.mktemp("l1-verify")
    v = verification.verify_image(ctx, "l1-makeft1", verification.ensure_local(ctx, r.repository, r.digest), work)
    rep, tag = None, f"l1-test-{uuid.uuid4().hex[:8]}"
    if v.verdict == "passed":
        verification.record(ctx, image_pk, v)
        rep = promote(ctx, "l1-makeft1", f"{L1_TAG}-runtime", tag, "alice", "L1 runs makeFT1 from this image",
                      channel="l1")
    yield v, rep, tag
    if rep is not None:
        untag(Registry(st_settings.registry), f"{st_settings.namespace}/l1-makeft1", tag)


def test_verified_against_the_host_build_and_promoted_to_l1(st_settings, l1_build, l1_promoted):
    from release_manager.registry import Registry
    v, rep, tag = l1_promoted
    assert v.verdict == "passed", (v.reason, [c for c in v.checks if c["result"] != "pass"])
    tests = {(c["file"], c["test"]) for c in v.checks}
    for f in ("default-ft1.fits", "gamma-ft1.fits", "muons-ft1.fits", "gamma-all-ft1.fits"):
        assert (f, "determinism") in tests, f      # run twice in the image, same products
    assert rep["status"] == "promoted", rep
    reg = Registry(st_settings.registry)
    assert reg.manifest_digest(f"{st_settings.namespace}/l1-makeft1", tag) == l1_build["runtime"].digest
    # the channel L1 runs from now holds that image, and the move is recorded
    assert rep["channel"]["result"] in ("moved", "unchanged"), rep["channel"]
    assert reg.manifest_digest(f"{st_settings.namespace}/l1-makeft1", "l1") == l1_build["runtime"].digest


@pytest.fixture(scope="module")
def l1_channel_sif(st_settings, specs, api, l1_promoted):
    """`relman sif l1-makeft1 --image l1 --push`: the SIF of the image the channel points at, pushed as
    `l1-makeft1:l1-sif` and recorded (built from), as an Apptainer farm takes it for `--image ...:l1`."""
    from release_manager.sif import build_sif
    _, rep, _tag = l1_promoted
    assert rep and rep["status"] == "promoted"
    res = build_sif(st_settings, specs, "l1-makeft1", "l1", push=True, api=api)
    assert res.image_digest == rep["channel"]["digest"]
    return res


@pytest.mark.parametrize("site_name", ["local-sge-docker", "local-slurm-apptainer"])
def test_makeft1_array_job_from_the_channel_on_the_farm(st_settings, l1_promoted, site_name, request):
    """What L1 does with the promoted image: one array job from the channel `l1` on the local Grid Engine (Docker)
    and on the local Slurm (Apptainer, from the channel's SIF), one merit file per task, as the farm user; the
    documented rows in each task's FT1."""
    import json
    import shutil
    import subprocess
    from click.testing import CliRunner
    from release_manager.cli import main
    from release_manager.config import PROJECT_ROOT
    from release_manager.farm import accounting
    from release_manager.farm.site import load_site
    _, rep, _tag = l1_promoted
    assert rep and rep["status"] == "promoted"
    site = load_site(site_name)[0]
    sif = request.getfixturevalue("l1_channel_sif") if site.runtime == "apptainer" else None
    script_name = {"sge": "gridengine", "slurm": "slurm"}[site.scheduler]
    subprocess.run([str(PROJECT_ROOT / "scripts" / "farm" / script_name), "up"], check=True, capture_output=True)
    inputs = [Path(site.binds.scratch.host) / f"l1-test-{name}-merit.root" for name in FILES]
    for name, dest in zip(FILES, inputs):
        shutil.copy(MERIT / f"{name}-merit.root", dest)
        dest.chmod(0o644)
    # task N takes the Nth merit file (a case on RELMAN_TASK_ID: the command is the same for every task)
    pick = " ".join(f"{i}) f={n} ;;" for i, n in enumerate(FILES, 1))
    script = (f'case "$RELMAN_TASK_ID" in {pick} esac; exec ' + " ".join(
        _argv("x", "ft1.fits", f"{EVT}/data/pass8.0_Transient_cuts_L1")).replace(
        "rootFile=/merit/x-merit.root", 'rootFile="/scratch/l1-test-$f-merit.root"').replace("/out/", ""))
    image = f"{st_settings.registry}/{st_settings.namespace}/l1-makeft1:l1"    # the channel L1 runs from
    r = CliRunner().invoke(main, ["farm", "submit", "--site", site_name, "--image", image, "--tasks",
                                  str(len(FILES)), "--json", "--", "sh", "-c", script])
    assert r.exit_code == 0, r.output
    job = json.loads(r.output)
    # the channel is resolved once, at submit: every task runs the promoted image, whatever moves later
    assert job["image"].endswith(f"/l1-makeft1@{rep['channel']['digest']}"), job["image"]
    if sif is not None:     # and its SIF: l1-sif, built from that image
        assert job["sif"].endswith(f"@{sif.registry_digest}"), job["sif"]
    d = Path(job["directory"])
    try:
        rows = accounting.wait(site, job["job_id"], tasks=len(FILES), timeout=900)
        logs = {t: (d / f"task-{t}.out").read_text() for t in range(1, len(FILES) + 1)}
        assert [(x.task, x.state, x.exit_code) for x in rows] == [(t, "done", 0) for t in logs], logs
        for t, name in enumerate(FILES, 1):
            with fits.open(d / f"task-{t}" / "ft1.fits") as h:
                assert h["EVENTS"].header["NAXIS2"] == EXPECTED_ROWS[name], (name, logs[t][-1500:])
    finally:
        shutil.rmtree(d, ignore_errors=True)
        for f in inputs:
            f.unlink(missing_ok=True)


def test_cache_plan_of_the_l1_nodes(st_settings, l1_build, sciencetools_build, l1_promoted):
    """`relman layers --site image_specs/cache-plans/l1-farm.yaml`: a node holding the ScienceTools runtime
    image and L1's (by its channel) pulls the layers they share once; the L1 image's own cost is its
    marginal bytes, the figure benchmarks/l1_build.py prints."""
    import json
    from click.testing import CliRunner
    from release_manager.cli import main
    from release_manager.config import PROJECT_ROOT
    _, rep, _tag = l1_promoted
    assert rep and rep["status"] == "promoted"
    r = CliRunner().invoke(main, ["layers", "--site", str(PROJECT_ROOT / "image_specs" / "cache-plans" / "l1-farm.yaml"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    rows = {row["image"].rsplit("/", 1)[1].split(":")[0]: row for row in plan["images"]}
    assert rows["l1-makeft1"]["digest"] == l1_build["runtime"].digest          # the channel's image
    assert rows["sciencetools"]["digest"] == sciencetools_build["runtime"].digest
    layers = {k.rsplit("/", 1)[1].split(":")[0]: {la["digest"]: la["size"] for la in v} for k, v in plan["layers"].items()}
    shared = set(layers["l1-makeft1"]) & set(layers["sciencetools"])
    assert len(shared) >= 3 and rows["l1-makeft1"]["shared_layers"] == len(shared)
    own = sum(s for d, s in layers["l1-makeft1"].items() if d not in shared)
    assert rows["l1-makeft1"]["marginal_compressed"] == own
    assert plan["cold_node_pull"] == sum({**layers["sciencetools"], **layers["l1-makeft1"]}.values())
    assert plan["cold_node_pull"] < plan["sum_of_images"]
    # the site's budget is the 400 MB, as bytes a node pulls
    assert rows["l1-makeft1"]["compressed"] <= 400e6 and plan["within_budget"], plan["images"]
    print(f"\ncache plan l1-farm: L1 image {rows['l1-makeft1']['compressed'] / 1e6:.1f} MB gzip'd, "
          f"{len(shared)} layers ({sum(layers['sciencetools'][d] for d in shared) / 1e6:.1f} MB) shared with "
          f"ScienceTools', marginal {own / 1e6:.1f} MB; cold node {plan['cold_node_pull'] / 1e6:.1f} MB")
