"""SIFs and Apptainer on the real engine and registry: the demo runtime image (pushed by the demo_build
fixture) made into a SIF by real Apptainer (the tool image of scripts/farm/apptainer-image), signed with
a PEM key, pushed and pulled over ORAS, recorded and shown; the demo workload run with
`apptainer exec --containall` as a non-root uid and compared with the Docker run. Nothing is mocked."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import MetaData, select

from release_manager.apptainer import Apptainer, sha256_file
from release_manager.cli import main
from release_manager.config import load_settings
from release_manager.db import connect, migrate, record_build
from release_manager.errors import NotFound, UsageError
from release_manager.sif import build_sif

from test_verify_e2e import host_reference  # noqa: F401 - fixture: the demo's bare-metal build

TAG = "v1.1.0-runtime"


@pytest.fixture(scope="module")
def key_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sif-key")
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = d / "signing.pem"
    private.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    os.chmod(private, 0o600)
    public = d / "signing.pub.pem"
    public.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    der = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"private": private, "public": public, "der": der}


@pytest.fixture(scope="module")
def sif_env(tmp_path_factory, settings, demo_build, key_files):
    """Settings on a private data folder and database that knows the demo runtime image."""
    data = tmp_path_factory.mktemp("sif-data")
    s = load_settings(data_dir=data, sif_signing_key=key_files["private"])
    db = connect(s.database_url, fresh=True)
    migrate.upgrade(db)
    record_build(demo_build["runtime"].as_dict(), db=db)
    return s, db


@pytest.fixture(scope="module")
def built(sif_env, demo_build, api, key_files, tmp_path_factory):
    """`relman sif evtselect --image sha256:... --sign --push --json`, through the command line. By digest: other
    sessions may move the shared tag v1.1.0-runtime meanwhile."""
    s, _ = sif_env
    out = tmp_path_factory.mktemp("sif-out") / "evtselect.sif"
    env = {"RELMAN_DATA_DIR": str(s.data_dir), "RELMAN_SIF_SIGNING_KEY": str(key_files["private"])}
    r = CliRunner().invoke(main, ["sif", "evtselect", "--image", demo_build["runtime"].digest, "--sign", "--push", "--json",
                                  "--out", str(out)], env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), r.output


def _app(api, s):
    return Apptainer(api, s.apptainer_image)


def test_sif_is_built_from_the_pushed_image_by_digest(built, demo_build, key_files):
    res, _ = built
    rt = demo_build["runtime"]
    assert res["image_digest"] == rt.digest
    assert res["source"] == f"docker://{rt.repository}@{rt.digest}"
    sif = os.path.realpath(res["path"])
    assert sha256_file(sif) == res["sha256"] and os.path.getsize(sif) == res["size"]
    with open(sif, "rb") as f:
        assert f.read(64).startswith(b"#!/usr/bin/env run-singularity")   # the SIF launch line
    # squashfs is smaller than the unpacked Docker image
    assert 0 < res["size"] < rt.size
    assert res["apptainer_version"][0].isdigit()
    pub = serialization.load_pem_public_key(key_files["public"].read_bytes())
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    assert res["signer"] == "sha256:" + hashlib.sha256(der).hexdigest()


def test_signature_verifies_and_a_tampered_copy_does_not(built, sif_env, api, key_files, tmp_path):
    res, _ = built
    s, _ = sif_env
    app = _app(api, s)
    shutil.copy(key_files["public"], tmp_path / "pub.pem")
    good = app.verify(res["path"], tmp_path / "pub.pem")
    assert good.exit_code == 0, good.output
    bad = tmp_path / "tampered.sif"
    shutil.copy(res["path"], bad)
    with open(bad, "r+b") as f:                     # one byte in the middle of the squashfs partition
        f.seek(res["size"] // 2)
        b = f.read(1)
        f.seek(res["size"] // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    r = app.verify(bad, tmp_path / "pub.pem")
    assert r.exit_code != 0 and "verif" in r.output.lower(), r.output
    # and another key's public half does not verify the good one
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "other.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    assert app.verify(res["path"], tmp_path / "other.pem").exit_code != 0


def test_oras_round_trip_is_byte_identical(built, sif_env, api, key_files, tmp_path):
    res, _ = built
    s, _ = sif_env
    assert res["registry_ref"] == f"oras://127.0.0.1:5000/fermi-lat/evtselect:sif-{res['image_digest'][7:47]}"
    assert res["registry_digest"].startswith("sha256:")
    app = _app(api, s)
    pulled = tmp_path / "pulled.sif"
    app.pull(res["registry_ref"], pulled)
    assert sha256_file(pulled) == res["sha256"]
    shutil.copy(key_files["public"], tmp_path / "pub.pem")
    assert app.verify(pulled, tmp_path / "pub.pem").exit_code == 0


def test_recorded_and_listed_by_images_show(built, sif_env, demo_build):
    res, _ = built
    s, _ = sif_env
    env = {"RELMAN_DATA_DIR": str(s.data_dir)}
    r = CliRunner().invoke(main, ["images", "show", demo_build["runtime"].digest, "--json"], env=env)
    assert r.exit_code == 0, r.output
    sifs = json.loads(r.output)["sifs"]
    mine = [x for x in sifs if x["id"] == res["record"]]
    assert mine and mine[0]["sha256"] == res["sha256"] and mine[0]["signer"] == res["signer"]
    assert mine[0]["registry_ref"] == res["registry_ref"] and mine[0]["size"] == res["size"]
    assert mine[0]["image_digest"] == demo_build["runtime"].digest
    r = CliRunner().invoke(main, ["images", "show", demo_build["runtime"].digest], env=env)
    assert f"sif {res['record']}: {res['sha256']}" in r.output and "signed by sha256:" in r.output


def test_the_key_is_never_in_the_sif_the_output_the_database_or_a_log(built, sif_env, key_files, tmp_path):
    res, output = built
    s, db = sif_env
    pem = key_files["private"].read_text()
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    der = key_files["der"]
    chunks = [der[i:i + 32] for i in range(40, len(der) - 32, 200)]     # pieces of the private key material
    sif = open(res["path"], "rb").read()
    assert not any(c in sif for c in chunks) and not any(ln.encode() in sif for ln in body)
    assert not any(ln in output for ln in body) and "PRIVATE KEY" not in output
    with db.read() as sess:
        meta = MetaData()
        meta.reflect(bind=sess.get_bind())
        dump = "\n".join(str(row) for t in meta.sorted_tables for row in sess.execute(select(t)))
    assert res["sha256"] in dump                       # the dump holds the SIF row ...
    assert not any(ln in dump for ln in body) and "PRIVATE KEY" not in dump    # ... and nothing of the key
    # the logs and files the command left in its data folder
    for p in s.data_dir.rglob("*"):
        if p.is_file() and p.suffix != ".sif":
            text = p.read_bytes()
            assert b"PRIVATE KEY" not in text and not any(ln.encode() in text for ln in body), p


def test_an_image_missing_from_the_registry_builds_and_records_nothing(sif_env, specs, api, tmp_path):
    s, db = sif_env
    with db.read() as sess:
        before = sess.execute(select(_sif_table(sess))).all()
    out = tmp_path / "x.sif"
    with pytest.raises(NotFound, match="evtselect:no-such-tag-12a is not in the registry"):
        build_sif(s, specs, "evtselect", "no-such-tag-12a", sign=True, push=True, out=out, api=api, db=db)
    with pytest.raises(UsageError, match="no spec for package 'nope'"):
        build_sif(s, specs, "nope", TAG, out=out, api=api, db=db)
    missing = load_settings(data_dir=s.data_dir, sif_signing_key=tmp_path / "gone.pem")
    with pytest.raises(UsageError, match=r"RELMAN_SIF_SIGNING_KEY=.*gone.pem: no such file"):
        build_sif(missing, specs, "evtselect", TAG, sign=True, out=out, api=api, db=db)
    assert not out.exists() and not list(tmp_path.glob(".relman-sif-*"))
    with db.read() as sess:
        assert sess.execute(select(_sif_table(sess))).all() == before


def _sif_table(sess):
    meta = MetaData()
    meta.reflect(bind=sess.get_bind(), only=["sif_images"])
    return meta.tables["sif_images"]


@pytest.fixture(scope="module")
def apptainer_verification(settings, specs, demo_build, host_reference, api, tmp_path_factory):
    from release_manager.verify.runner import verify_package
    work = tmp_path_factory.mktemp("verify-apptainer")
    rt = demo_build["runtime"]
    out = verify_package(settings, specs, "evtselect", f"{rt.repository}@{rt.digest}", work, api=api,
                         echo=lambda m: None, plots=False, apptainer=True)
    return out, work


def test_workload_under_apptainer_containall_equals_the_docker_run(apptainer_verification):
    out, work = apptainer_verification
    assert out.verdict == "pass", [c.message for c in out.failures()]
    meta = out.meta["apptainer"]
    assert meta["options"] == ["exec", "--containall"] and meta["uid"] == 1000 and meta["verdict"] == "pass"
    sides = [s["side"] for s in out.steps]
    assert sides.count("apptainer") == 1 and "image" in sides
    files = {c.file for c in out.checks if c.file.startswith("apptainer-vs-docker/")}
    assert "apptainer-vs-docker/selected.fits" in files
    produced = work / "outputs" / "apptainer" / "selected.fits"
    assert produced.stat().st_uid == 1000 and produced.stat().st_size > 0     # written as the caller, not root
    # what the report says
    from release_manager.verify.report import write_reports
    paths = write_reports(out, work / "report", html=False)
    summary = json.loads(open(paths["json"]).read())
    assert summary["meta"]["apptainer"]["sha256"] == meta["sha256"]


def test_apptainer_sees_a_read_only_image_the_callers_uid_and_no_home(apptainer_verification, settings, api):
    _, work = apptainer_verification
    app = Apptainer(api, settings.apptainer_image)
    sif = work / "apptainer" / "image.sif"
    probe = ("id -u; echo HOME=$HOME; ls -A $HOME | wc -l; touch /usr/probe 2>/dev/null && echo writable || "
             "echo read-only; env | grep -c '^RELMAN_UID=' || true")
    r = app.exec(sif, ["/bin/sh", "-c", probe], {}, uid=1000, gid=1000)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert lines[0] == "1000"
    assert lines[2] == "0"                             # HOME is empty: nothing of the host's home
    assert lines[3] == "read-only"
    assert lines[4] == "0"          # --containall: a clean environment (RELMAN_UID is set in the tool container)


def test_a_difference_under_apptainer_fails_the_verification(apptainer_verification, settings, specs, api, demo_build,
                                                             tmp_path):
    """The Docker side's output altered (one event dropped): the Apptainer run's output no longer equals it."""
    from astropy.io import fits
    from release_manager.verify.result import Outcome
    from release_manager.verify.runner import resolve_inputs
    from release_manager.verify.under_apptainer import run_workload
    _, work = apptainer_verification
    ver = specs.packages["evtselect"].spec.verification
    docker_out = tmp_path / "docker"
    docker_out.mkdir()
    with fits.open(work / "outputs" / "image" / "selected.fits") as h:
        h["EVENTS"].data = h["EVENTS"].data[:-1]
        h.writeto(docker_out / "selected.fits")
    image_id = out_image_id = apptainer_verification[0].meta["image_id"]
    assert out_image_id == demo_build["runtime"].image_id
    out = Outcome()
    run_workload(settings, api, image_id, ver.workload, resolve_inputs(ver, settings), docker_out, tmp_path / "w",
                 1000, ver, out, lambda m: None, sif=work / "apptainer" / "image.sif")
    assert out.verdict == "fail" and out.meta["apptainer"]["verdict"] == "fail"
    failed = [c for c in out.checks if c.failed]
    assert failed and all(c.file == "apptainer-vs-docker/selected.fits" for c in failed)


def test_the_rendered_definition_pinned_by_digest_builds_and_runs(sif_env, specs, demo_build, api, tmp_path):
    """The Apptainer definition relman renders, pinned to the pushed runtime image, built by real Apptainer;
    its runscript gives the images' uniform command line."""
    from release_manager.plan import make_plan
    from release_manager.render import render_package, write_files
    from release_manager.apptainer import Bind
    s, _ = sif_env
    rt = demo_build["runtime"]
    files = render_package(make_plan(specs, "evtselect"), s.registry, s.namespace, ["runtime"],
                           digests={"runtime": rt.digest})
    write_files(files, tmp_path / "r")
    definition = tmp_path / "r" / "singularity" / "runtime.def"
    assert f"@{rt.digest}" in definition.read_text()
    app = _app(api, s)
    app.build(tmp_path / "r" / "pinned.sif", str(definition), binds=[Bind(definition)])
    r = app.run(["apptainer", "run", "--containall", str(tmp_path / "r" / "pinned.sif"), "--version"],
                binds=[Bind(tmp_path / "r")], uid=1000, gid=1000)
    assert "variant:    runtime" in r.output and "package:    evtselect" in r.output, r.output


def test_tool_image_script_is_idempotent(api):
    """scripts/farm/apptainer-image with the image present changes nothing and says so; a bad argument is exit 2."""
    import subprocess
    from release_manager.config import PROJECT_ROOT
    script = PROJECT_ROOT / "scripts" / "farm" / "apptainer-image"
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing to do" in r.stdout or "made relman/apptainer:sid" in r.stdout
    again = subprocess.run([str(script)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "present (apptainer version " in again.stdout and "nothing to do" in again.stdout
    bad = subprocess.run([str(script), "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage:" in bad.stderr


def test_promotion_carries_the_pushed_sif_to_the_promoted_tag(built, sif_env, specs, api, demo_build):
    """The image promoted (on an audited override: this database holds no verification) takes its pushed
    SIF along: `<promoted tag>-sif` names the same ORAS artifact, so a farm pulls the promoted image's SIF."""
    import uuid

    from release_manager.registry import Registry
    from release_manager.workflows.common import untag
    from release_manager.workflows.promote import promote

    from test_workflows_helpers import make_ctx
    res, _ = built
    s, db = sif_env
    dest = f"sif{uuid.uuid4().hex[:8]}-runtime"
    reg = Registry(s.registry)
    repo = "fermi-lat/evtselect"
    try:
        rep = promote(make_ctx(s, specs, api, db), "evtselect", TAG, dest, "alice",
                      "SIF follows its image", override=True)
        assert rep["status"] == "promoted", rep
        assert rep["images"][0]["sifs"] == [f"{s.registry}/{repo}:{dest}-sif"]
        assert reg.manifest_digest(repo, dest) == demo_build["runtime"].digest
        assert reg.manifest_digest(repo, f"{dest}-sif") == res["registry_digest"]
    finally:
        for t in (dest, f"{dest}-sif"):
            if reg.manifest_digest(repo, t):
                untag(reg, repo, t)


def test_gc_deletes_the_sif_of_a_manifest_it_deletes(built, settings, specs, api, demo_build, tmp_path):
    """An old nightly gc deletes takes its pushed SIF (the real one of `built`, pushed by Apptainer next to an
    image of a package of this test's own) out of the registry with it; the dry run deletes nothing; the SIF
    stays listed by `relman history` (the database keeps what was built)."""
    import datetime as dt
    import uuid

    from release_manager.db import record_sif
    from release_manager.registry import Registry
    from release_manager.workflows.common import record_result
    from release_manager.workflows.gc import GcSettings, collect

    from test_workflows_helpers import drop_repository, make_ctx
    res, _ = built
    s = load_settings(data_dir=tmp_path / "data")
    db = connect(s.database_url, fresh=True)
    migrate.upgrade(db)
    name = f"gcsif{uuid.uuid4().hex[:6]}"
    path, repo = f"fermi-lat/{name}", f"{s.registry}/fermi-lat/{name}"
    rt = demo_build["runtime"]
    reg = Registry(s.registry)
    try:
        # the demo runtime image as this package's old nightly, and its SIF pushed next to it
        api.tag(f"{rt.repository}@{rt.digest}", repo, "nightly-20261001-runtime")
        for line in api.push(repo, "nightly-20261001-runtime", stream=True, decode=True):
            assert "error" not in line, line
        digest = reg.manifest_digest(path, "nightly-20261001-runtime")
        sif_tag = f"sif-{digest[7:47]}"
        _app(api, s).push(res["path"], f"oras://{repo}:{sif_tag}")
        sif_digest = reg.manifest_digest(path, sif_tag)
        assert sif_digest
        ctx = make_ctx(s, specs, api, db)
        record_result(ctx, {"package": name, "ref": "main", "commit": "c" * 40, "variant": "runtime",
                            "target": "runtime", "build_key": "b" * 64, "repository": repo,
                            "tags": ["nightly-20261001-runtime"], "status": "built", "pushed": True, "digest": digest,
                            "image_id": rt.image_id, "started": "2026-10-01T03:00:00Z"})
        record_sif(name, image_digest=digest, source=f"docker://{repo}@{digest}", sha256=res["sha256"],
                   size=res["size"], apptainer_version=res["apptainer_version"], registry_ref=f"oras://{repo}:{sif_tag}",
                   registry_digest=sif_digest, db=db)
        conf = GcSettings(nightly_days=14, keep=0, failed_days=7)
        today = dt.date(2026, 11, 27)
        dry = collect(ctx, dry_run=True, package=name, today=today, conf=conf)
        assert dry["deleted_sifs"] == [{"ref": f"oras://{repo}:{sif_tag}", "digest": sif_digest, "image": digest}]
        assert reg.manifest_digest(path, sif_tag) == sif_digest               # a dry run deletes nothing
        done = collect(ctx, dry_run=False, package=name, today=today, conf=conf)
        assert done["deleted_sifs"] == dry["deleted_sifs"]
        assert [m["digest"] for m in done["deleted_manifests"]] == [digest]
        assert reg.manifest_digest(path, "nightly-20261001-runtime") is None
        assert reg.manifest_digest(path, sif_tag) is None and reg.manifest_digest(path, sif_digest) is None
        # the SIF of the demo image itself (same content, its own repository) is untouched
        assert reg.manifest_digest("fermi-lat/evtselect", res["registry_ref"].rsplit(":", 1)[1]) == res["registry_digest"]
        r = CliRunner().invoke(main, ["history", name, "--json"], env={"RELMAN_DB_URL": s.database_url})
        assert r.exit_code == 0, r.output
        h = json.loads(r.output)
        assert [(x["sha256"], x["registry_ref"]) for x in h["sifs"]] == [(res["sha256"], f"oras://{repo}:{sif_tag}")]
        r = CliRunner().invoke(main, ["history", name], env={"RELMAN_DB_URL": s.database_url})
        assert r.exit_code == 0 and f"SIF {res['sha256'][:19]}" in r.output, r.output
    finally:
        drop_repository(s, path)
        try:
            api.remove_image(f"{repo}:nightly-20261001-runtime", noprune=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
