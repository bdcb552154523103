"""`relman sif`: a SIF (Apptainer image) built by real Apptainer from a pushed image, pinned by its digest;
optionally signed (a PEM key named by the settings), pushed as an ORAS artifact next to the image, and
recorded in the release database.

Everything that can be refused is refused before anything is built: an unknown package, a bad tag, an
image the registry does not have, a missing or unusable signing key, a database that is not migrated.
The SIF is made in a temporary folder and moved into place only when complete (and signed, if asked);
it is recorded last. The ORAS tag is `<TAG>-sif` (`sif-<digest[:40]>` for --image sha256:...), in the
image's own repository: `oras://<registry>/<namespace>/<package>:<TAG>-sif`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from release_manager import tags
from release_manager.apptainer import Apptainer, ApptainerError, sha256_file
from release_manager.errors import NotFound, RelmanError, UsageError

DIGEST_LEN = 71          # "sha256:" + 64 hex digits


@dataclass
class SifResult:
    package: str
    image: str                       # repository:tag (or repository@digest) as asked
    image_digest: str
    source: str                      # what Apptainer built from (docker://...@sha256:...)
    path: str
    sha256: str
    size: int
    apptainer_version: str
    build_seconds: float
    image_compressed_bytes: Optional[int] = None
    signer: Optional[str] = None     # sha256 fingerprint of the signing public key
    public_key: Optional[str] = None
    registry_ref: Optional[str] = None
    registry_digest: Optional[str] = None
    record: Optional[int] = None

    def as_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class SigningKey:
    """A PEM private key's path and its public half; the private bytes are read only to derive the public key."""
    path: Path
    public_pem: bytes
    fingerprint: str

    def __repr__(self):  # the path is shown, never the key
        return f"SigningKey(path={str(self.path)!r}, fingerprint={self.fingerprint!r})"


def load_signing_key(settings) -> SigningKey:
    path = settings.sif_signing_key
    if not path:
        raise UsageError("--sign needs a signing key: set RELMAN_SIF_SIGNING_KEY (or sif_signing_key in the config "
                         "file) to the path of a PEM private key")
    path = Path(path).expanduser()
    where = f"RELMAN_SIF_SIGNING_KEY={path}"
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{where}: not readable ({exc.strerror})") from None
    from cryptography.hazmat.primitives import serialization
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise UsageError(f"{where}: the key is encrypted; Apptainer signs here without a terminal, so give an "
                         "unencrypted PEM key (keep it readable by the release manager only)") from None
    except Exception:  # noqa: BLE001 - unsupported or malformed: never echo the content
        raise UsageError(f"{where}: not a PEM private key (RSA, ECDSA or Ed25519, PKCS#8 or traditional)") from None
    finally:
        del data
    pub = key.public_key()
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SigningKey(path.resolve(), pem, "sha256:" + hashlib.sha256(der).hexdigest())


def oras_tag(image_ref: str, digest: str) -> str:
    return tags.check_tag(f"{image_ref}-sif" if not image_ref.startswith("sha256:") else f"sif-{digest[7:47]}")


def build_sif(settings, specs, package: str, image: str, sign: bool = False, push: bool = False,
              out: Optional[Path] = None, api=None, db=None, record: bool = True,
              echo: Callable[[str], None] = lambda m: None) -> SifResult:
    from release_manager.registry import Registry, load_credentials
    # ---- everything refusable, before any work
    if package not in specs.packages:
        raise UsageError(f"no spec for package {package!r} (have: {', '.join(sorted(specs.packages))})")
    if image.startswith("sha256:"):
        if len(image) != DIGEST_LEN or any(c not in "0123456789abcdef" for c in image[7:]):
            raise UsageError(f"--image {image!r}: a digest is sha256:<64 lowercase hex digits>")
    else:
        tags.check_tag(image)
    repository = tags.repository(settings.registry, settings.namespace, package)
    key = load_signing_key(settings) if sign else None
    if record:
        from release_manager.db.connection import for_settings
        db = db or for_settings(settings)
        db.require_schema()
    creds = load_credentials(settings, settings.registry)
    reg = Registry(settings.registry, creds, insecure=settings.registry_insecure, retries=settings.push_retries)
    path = tags.registry_path(repository)
    got = reg.get_manifest(path, image)
    if got is None:
        raise NotFound(f"{repository}:{image} is not in the registry {settings.registry} (push it first: "
                       f"`relman build {package} --ref REF --push`)" if not image.startswith("sha256:") else
                       f"{repository}@{image} is not in the registry {settings.registry}")
    raw, media_type, digest = got
    compressed = _compressed_size(raw)
    ref_tag = oras_tag(image, digest) if push else None
    dest = Path(out) if out else settings.results_dir / package / "sif" / f"{image.replace(':', '-')}.sif"
    if dest.exists() and dest.is_dir():
        raise UsageError(f"--out {dest}: is a folder; give the SIF's file name")

    # ---- the work
    from release_manager import engine
    api = api or engine.connect(settings)
    app = Apptainer(api, settings.apptainer_image, nohttps=settings.registry_insecure,
                    timeout=settings.docker_timeout)
    source = f"docker://{repository}@{digest}"
    env = {}
    if creds:   # read by Apptainer from its environment; never on its command line
        env = {"APPTAINER_DOCKER_USERNAME": creds.username, "APPTAINER_DOCKER_PASSWORD": creds.password}
    version = app.version()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".relman-sif-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o755)
        sif = tmp / dest.name
        echo(f"apptainer {version}: building {dest.name} from {source}")
        t0 = time.monotonic()
        app.build(sif, source, env=env)
        seconds = round(time.monotonic() - t0, 2)
        signer = pub_path = None
        if key:
            app.sign(sif, key.path)
            pub = tmp / (dest.name + ".pub.pem")
            pub.write_bytes(key.public_pem)
            v = app.verify(sif, pub)
            if v.exit_code != 0:
                raise ApptainerError(f"the signed {dest.name} does not verify with its own public key:\n  "
                                     + "\n  ".join(v.output.strip().splitlines()[-6:]))
            signer = key.fingerprint
            pub_path = dest.parent / pub.name
            echo(f"signed with key {signer[:23]}... (public key: {pub_path})")
        sha, size = sha256_file(sif), sif.stat().st_size
        stale = dest.parent / (dest.name + ".pub.pem")
        if not key and stale.exists():      # an unsigned SIF must not sit next to an older build's public key
            stale.unlink()
        for f in tmp.iterdir():
            os.replace(f, dest.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = SifResult(package, f"{repository}@{image}" if image.startswith("sha256:") else f"{repository}:{image}",
                    digest, source, str(dest), sha, size, version, seconds, compressed, signer,
                    str(pub_path) if pub_path else None)
    if push and ref_tag:
        oras = f"oras://{repository}:{ref_tag}"
        app.push(dest, oras)
        res.registry_ref = oras
        res.registry_digest = reg.manifest_digest(path, ref_tag)
        if not res.registry_digest:
            raise RelmanError(f"pushed {oras} but the registry does not show {path}:{ref_tag}")
        echo(f"pushed {oras} ({res.registry_digest})")
    if record:
        from release_manager.db import record_sif
        res.record = record_sif(package, image_digest=digest, source=source, sha256=sha, size=size,
                                apptainer_version=version, signer=signer, registry_ref=res.registry_ref,
                                registry_digest=res.registry_digest, build_seconds=seconds, db=db)
    return res


def _compressed_size(raw: bytes) -> Optional[int]:
    """The image's compressed layer bytes, from its manifest (None for an index)."""
    import json
    try:
        m = json.loads(raw)
        return sum(int(layer["size"]) for layer in m.get("layers", [])) or None
    except (ValueError, KeyError, TypeError):
        return None
