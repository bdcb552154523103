"""`relman sif` refuses bad input before any work (no engine, no registry, nothing recorded), keeps the
signing key out of every message, and the Apptainer definitions name images by digest when told it.
No engine here: the refusals come first, so these run anywhere."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from release_manager.cli import main
from release_manager.config import PROJECT_ROOT, load_settings
from release_manager.errors import UsageError
from release_manager.plan import make_plan
from release_manager.render import render_package
from release_manager.sif import load_signing_key, oras_tag
from release_manager.spec import load_specs

SPECS = load_specs(PROJECT_ROOT / "image_specs")
GOLDEN = Path(__file__).parent / "golden" / "render-pinned"
DIGEST = "sha256:" + "0123456789abcdef" * 4
REGENERATE = os.environ.get("RELMAN_REGENERATE_GOLDEN") == "1"


@pytest.fixture
def ec_key(tmp_path):
    k = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path / "k.pem"
    p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    der = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return p, "sha256:" + hashlib.sha256(der).hexdigest()


def _sif(tmp_path, *args, **env):
    env = {"RELMAN_DATA_DIR": str(tmp_path / "data"), "RELMAN_SIF_SIGNING_KEY": None, **env}
    return CliRunner().invoke(main, ["sif", *args], env=env)


def _nothing_written(tmp_path):
    data = tmp_path / "data"
    assert not data.exists() or not any(p.suffix in (".sif", ".db") for p in data.rglob("*"))


@pytest.mark.parametrize("args,message", [
    (["nopkg", "--image", "v1-runtime"], "no spec for package 'nopkg' (have: "),
    (["evtselect", "--image", "Bad Tag"], "'Bad Tag'"),
    (["evtselect", "--image", "sha256:1234"], "a digest is sha256:<64 lowercase hex digits>"),
    (["evtselect", "--image", "v1;rm -rf /"], "v1;rm -rf /"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, args, message):
    r = _sif(tmp_path, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    _nothing_written(tmp_path)


def test_image_is_required(tmp_path):
    r = _sif(tmp_path, "evtselect")
    assert r.exit_code == 2 and "--image" in r.output


def test_sign_without_a_key_setting_says_which_setting(tmp_path):
    r = _sif(tmp_path, "evtselect", "--image", "v1.1.0-runtime", "--sign", RELMAN_SIF_SIGNING_KEY=None)
    assert r.exit_code == 2 and "RELMAN_SIF_SIGNING_KEY" in r.output
    _nothing_written(tmp_path)


def test_missing_key_file(tmp_path):
    r = _sif(tmp_path, "evtselect", "--image", "v1.1.0-runtime", "--sign",
             RELMAN_SIF_SIGNING_KEY=str(tmp_path / "none.pem"))
    assert r.exit_code == 2 and f"RELMAN_SIF_SIGNING_KEY={tmp_path / 'none.pem'}: no such file" in r.output
    _nothing_written(tmp_path)


def test_a_file_that_is_not_a_key_is_refused_without_showing_it(tmp_path):
    bad = tmp_path / "notakey.pem"
    secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNpZ25pbmcta2V5LWNvbnRlbnQtMTJh\n-----END PRIVATE KEY-----\n"
    bad.write_text(secret)
    r = _sif(tmp_path, "evtselect", "--image", "v1.1.0-runtime", "--sign", RELMAN_SIF_SIGNING_KEY=str(bad))
    assert r.exit_code == 2 and "not a PEM private key" in r.output
    assert "c2VjcmV0" not in r.output and "BEGIN" not in r.output
    _nothing_written(tmp_path)


def test_an_encrypted_key_is_refused_with_the_reason(tmp_path):
    k = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path / "enc.pem"
    p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"passphrase-12a")))
    with pytest.raises(UsageError, match="the key is encrypted"):
        load_signing_key(load_settings(data_dir=tmp_path, sif_signing_key=p))


def test_signing_key_fingerprint_and_repr_hold_no_key_material(tmp_path, ec_key):
    path, fingerprint = ec_key
    key = load_signing_key(load_settings(data_dir=tmp_path, sif_signing_key=path))
    assert key.fingerprint == fingerprint
    assert b"PUBLIC KEY" in key.public_pem and b"PRIVATE" not in key.public_pem
    body = [ln for ln in path.read_text().splitlines() if not ln.startswith("-----")]
    shown = repr(key) + str(key)
    assert str(path.resolve()) in shown and not any(ln in shown for ln in body)


def test_the_key_setting_comes_from_the_environment_and_is_a_path(tmp_path, monkeypatch, ec_key):
    path, _ = ec_key
    monkeypatch.setenv("RELMAN_SIF_SIGNING_KEY", str(path))
    assert load_settings(data_dir=tmp_path).sif_signing_key == path
    monkeypatch.setenv("RELMAN_APPTAINER_IMAGE", "relman/apptainer:other")
    assert load_settings(data_dir=tmp_path).apptainer_image == "relman/apptainer:other"


def test_oras_tags():
    assert oras_tag("v1.1.0-runtime", DIGEST) == "v1.1.0-runtime-sif"
    assert oras_tag(DIGEST, DIGEST) == "sif-" + DIGEST[7:47]
    with pytest.raises(UsageError):
        oras_tag("x" * 126, DIGEST)            # past the registry's 128 characters


def test_record_sif_refuses_bad_values_and_records_nothing(tmp_path):
    from sqlalchemy import text
    from release_manager.db import connect, migrate, record_sif
    db = connect(f"sqlite:///{tmp_path / 'r.db'}", fresh=True)
    migrate.upgrade(db)
    ok = dict(image_digest=DIGEST, source="docker://x@" + DIGEST, sha256=DIGEST, size=10, apptainer_version="1.4.5")
    for bad in ({"image_digest": "sha256:12"}, {"sha256": "md5:1"}, {"size": 0}):
        with pytest.raises(UsageError):
            record_sif("evtselect", **{**ok, **bad}, db=db)
    with db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM sif_images")).scalar() == 0
        assert c.execute(text("SELECT count(*) FROM packages")).scalar() == 0
    rid = record_sif("evtselect", **ok, signer="sha256:" + "f" * 64, db=db)
    with db.engine.connect() as c:
        row = c.execute(text("SELECT image_pk, sha256, signer FROM sif_images WHERE id = :i"), {"i": rid}).one()
        audit = c.execute(text("SELECT action FROM audit_log WHERE entity = 'sif'")).scalars().all()
    assert row == (None, DIGEST, "sha256:" + "f" * 64) and audit == ["build-sif"]
    from release_manager.db.queries import table_counts
    with db.read() as s:
        assert table_counts(s)["sif images"] == 1          # `relman db status` counts them


# ---------------------------------------------------------------------- Apptainer definitions by digest

def test_pinned_definition_matches_its_golden():
    files = render_package(make_plan(SPECS, "evtselect"), "127.0.0.1:5000", "fermi-lat", digests={"runtime": DIGEST})
    text = files["singularity/runtime.def"]
    gold = GOLDEN / "evtselect" / "singularity" / "runtime.def"
    if REGENERATE:
        gold.parent.mkdir(parents=True, exist_ok=True)
        gold.write_text(text)
    assert text == gold.read_text()
    assert f"/fermi-lat/evtselect@{DIGEST}" in text and "TAG" not in text
    # the others, unknown, say so and keep the moving tag
    assert "# digest unknown at render time" in files["singularity/debug.def"]
    assert "evtselect:{{ TAG }}" in files["singularity/debug.def"] and "TAG=nightly-debug" in files["singularity/debug.def"]


def test_every_unpinned_definition_says_its_digest_is_unknown():
    for name in SPECS.packages:
        for rel, text in render_package(make_plan(SPECS, name), "127.0.0.1:5000", "fermi-lat").items():
            if rel.endswith(".def"):
                assert "# digest unknown at render time" in text and "@sha256:" not in text, rel
                assert "latest-" not in text, rel        # the old default tag, which no build makes


@pytest.mark.parametrize("digest,message", [
    ({"nosuch": DIGEST}, "has no target 'nosuch'"),
    ({"runtime": "sha256:ABC"}, "a digest is sha256:<64 lowercase hex digits>"),
])
def test_bad_digests_are_refused(digest, message):
    with pytest.raises(UsageError, match=message):
        render_package(make_plan(SPECS, "evtselect"), "127.0.0.1:5000", "fermi-lat", digests=digest)


def test_render_command_takes_digests(tmp_path):
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["render", "evtselect", "--digest", f"runtime={DIGEST}", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"@{DIGEST}" in (out / "singularity" / "runtime.def").read_text()
    r = CliRunner().invoke(main, ["render", "evtselect", "--digest", "runtime", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "expected TARGET=sha256:" in r.output and not (tmp_path / "x").exists()
