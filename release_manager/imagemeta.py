"""Images as the registry holds them: manifest, config and layers, read over the v2 API (no pull).

A layer's file index (paths, types, sizes, content hashes, the dpkg status file it carries) is read
once by streaming its blob through gzip and tarfile in stream mode (nothing is unpacked to disk)
and cached under <data_dir>/layer-index/ by the layer's digest: a blob never changes under its
digest, so the cache never needs invalidating. The same pass gives the uncompressed size and checks
the layer against the config's diff_id.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from release_manager.errors import RegistryError, UsageError
from release_manager.registry import Registry, load_credentials

INDEX_VERSION = 1
DPKG_STATUS = "var/lib/dpkg/status"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
RPM_DB_DIRS = ("var/lib/rpm/", "usr/lib/sysimage/rpm/")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_GZIP_TYPES = ("tar.gzip", "tar+gzip")
_PLAIN_TYPES = ("rootfs.diff.tar", "layer.v1.tar")


@dataclass(frozen=True)
class ImageRef:
    """registry host, repository path (namespace/name) and a tag or digest."""
    host: str
    repository: str
    reference: str

    def __str__(self):
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.host}/{self.repository}{sep}{self.reference}"


def parse_image(text: str, default_host: str, namespace: str) -> ImageRef:
    """'pkg:tag', 'ns/pkg:tag', 'host:port/ns/pkg:tag' or any of them with '@sha256:...'.

    A bare name is a package of the configured namespace; the host is the configured registry
    unless the first component looks like one (has a '.' or ':' or is 'localhost').
    """
    from release_manager.tags import check_repository, check_tag
    raw = text.strip()
    if "@" in raw:
        name, ref = raw.split("@", 1)
        if not _DIGEST_RE.match(ref):
            raise UsageError(f"image {text!r}: digest {ref!r} is not sha256:<64 hex digits>")
    else:
        slash = raw.rfind("/")
        colon = raw.rfind(":")
        if colon > slash:
            name, ref = raw[:colon], raw[colon + 1:]
        else:
            raise UsageError(f"image {text!r}: give a tag or digest (e.g. evtselect:v1.1.0-runtime, "
                             "fermi-lat/evtselect@sha256:...)")
        check_tag(ref)
    parts = name.split("/")
    host = default_host
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host, parts = parts[0], parts[1:]
    if len(parts) == 1:
        parts = [namespace, parts[0]]
    repo = "/".join(parts)
    try:
        check_repository(repo)
    except UsageError as exc:
        raise UsageError(f"image {text!r}: {exc}") from None
    return ImageRef(host, repo, ref)


@dataclass
class Layer:
    digest: str
    size: int                      # compressed bytes (what a node pulls)
    media_type: str
    diff_id: Optional[str] = None  # from the config: digest of the uncompressed tar
    created_by: Optional[str] = None
    uncompressed: Optional[int] = None

    def as_dict(self):
        return {"digest": self.digest, "size": self.size, "uncompressed": self.uncompressed,
                "diff_id": self.diff_id, "media_type": self.media_type, "created_by": self.created_by}


@dataclass
class Image:
    ref: ImageRef
    digest: str
    config_digest: str
    config: Dict[str, Any]
    layers: List[Layer] = field(default_factory=list)

    @property
    def labels(self) -> Dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    @property
    def platform(self) -> str:
        return f"{self.config.get('os', '?')}/{self.config.get('architecture', '?')}"

    @property
    def compressed(self) -> int:
        return sum(la.size for la in self.layers)

    @property
    def uncompressed(self) -> Optional[int]:
        sizes = [la.uncompressed for la in self.layers]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]


class ImageReader:
    """Reads images from one or more registries; clients are made per host with the site's credentials."""

    def __init__(self, settings, cache_dir: Optional[Path] = None):
        self.settings = settings
        self.cache_dir = Path(cache_dir or settings.data_dir / "layer-index")
        self._clients: Dict[str, Registry] = {}
        self.read_layers: List[str] = []    # digests streamed from the registry by this reader
        self.cached_layers: List[str] = []  # digests answered from the cache

    def client(self, host: str) -> Registry:
        if host not in self._clients:
            s = self.settings
            if host == s.registry:
                creds = load_credentials(s, host)
            else:  # RELMAN_REGISTRY_USER/PASSWORD belong to RELMAN_REGISTRY: another host gets only its own entry
                creds = load_credentials(s.model_copy(update={"registry_user": None, "registry_password": None}), host) \
                    if s.registry_credentials_file else None
            self._clients[host] = Registry(host, creds, s.registry_insecure, s.push_retries)
        return self._clients[host]

    def parse(self, text: str) -> ImageRef:
        return parse_image(text, self.settings.registry, self.settings.namespace)

    # -------------------------------------------------------------- manifest and config

    def image(self, ref: ImageRef) -> Image:
        reg = self.client(ref.host)
        got = reg.get_manifest(ref.repository, ref.reference)
        if got is None:
            raise RegistryError(f"{ref}: not found in the registry")
        raw, media_type, digest = got
        manifest = json.loads(raw)
        media_type = manifest.get("mediaType") or media_type
        if "manifests" in manifest:  # an index: the linux/amd64 entry (what the farms run)
            chosen = [m for m in manifest["manifests"]
                      if (m.get("platform") or {}).get("os") == "linux"
                      and (m.get("platform") or {}).get("architecture") == "amd64"]
            if not chosen:
                raise RegistryError(f"{ref}: the manifest list has no linux/amd64 image")
            got = reg.get_manifest(ref.repository, chosen[0]["digest"])
            if got is None:
                raise RegistryError(f"{ref}: manifest {chosen[0]['digest']} listed but missing")
            raw, media_type, digest = got
            manifest = json.loads(raw)
        if manifest.get("schemaVersion") != 2 or "config" not in manifest:
            raise RegistryError(f"{ref}: unsupported manifest ({media_type}); schema 2 images only")
        config_digest = manifest["config"]["digest"]
        config = self._blob_json(reg, ref, config_digest)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        history = [h for h in config.get("history") or [] if not h.get("empty_layer")]
        layers = []
        for i, la in enumerate(manifest.get("layers") or []):
            layers.append(Layer(la["digest"], int(la.get("size") or 0), la.get("mediaType", ""),
                                diff_ids[i] if i < len(diff_ids) else None,
                                (history[i].get("created_by") if i < len(history) else None)))
        img = Image(ref, digest or "", config_digest, config, layers)
        for la in img.layers:
            meta = self._cached_meta(la.digest)
            if meta:
                la.uncompressed = meta["uncompressed"]
        return img

    def _blob_json(self, reg: Registry, ref: ImageRef, digest: str) -> Dict[str, Any]:
        r = reg.blob(ref.repository, digest)
        if r is None:
            raise RegistryError(f"{ref}: blob {digest} missing from the registry")
        if "sha256:" + hashlib.sha256(r.content).hexdigest() != digest:
            raise RegistryError(f"{ref}: blob {digest} does not match its digest")
        return r.json()

    # -------------------------------------------------------------- layer file indexes

    def _path(self, digest: str) -> Path:
        return self.cache_dir / f"{digest.replace(':', '-')}.json.gz"

    def _cached_meta(self, digest: str) -> Optional[Dict[str, Any]]:
        p = self._path(digest)
        meta = p.with_suffix("").with_suffix(".meta.json")
        try:
            return json.loads(meta.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def layer_index(self, img: Image, layer: Layer) -> Dict[str, Any]:
        """The file index of a layer: from the cache, or streamed from the registry once and cached."""
        p = self._path(layer.digest)
        try:
            with gzip.open(p, "rt") as fh:
                idx = json.load(fh)
            if idx.get("version") == INDEX_VERSION:
                self.cached_layers.append(layer.digest)
                layer.uncompressed = idx["uncompressed"]
                return idx
        except (FileNotFoundError, OSError, json.JSONDecodeError, EOFError):
            pass
        idx = self._stream_index(img, layer)
        self._store(p, idx)
        self.read_layers.append(layer.digest)
        layer.uncompressed = idx["uncompressed"]
        return idx

    def ensure_sizes(self, img: Image) -> None:
        """Fill every layer's uncompressed size (streams the layers not seen before)."""
        for la in img.layers:
            if la.uncompressed is None:
                self.layer_index(img, la)

    def _store(self, p: Path, idx: Dict[str, Any]) -> None:
        # write-then-rename: a reader never sees half an index, concurrent writers agree on the content
        p.parent.mkdir(parents=True, exist_ok=True)
        for target, data in ((p, None), (p.with_suffix("").with_suffix(".meta.json"), None)):
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    if target == p:
                        with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=1) as gz:
                            gz.write(json.dumps(idx, separators=(",", ":")).encode())
                    else:
                        fh.write(json.dumps({"digest": idx["digest"], "uncompressed": idx["uncompressed"],
                                             "files": len(idx["entries"])}).encode())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _stream_index(self, img: Image, layer: Layer) -> Dict[str, Any]:
        mt = layer.media_type
        if "zstd" in mt:
            raise RegistryError(f"{img.ref}: layer {layer.digest} is zstd-compressed ({mt}); "
                                "only gzip and plain tar layers can be read")
        compressed = any(t in mt for t in _GZIP_TYPES) or not any(mt.endswith(t) for t in _PLAIN_TYPES)
        reg = self.client(img.ref.host)
        r = reg.blob(img.ref.repository, layer.digest, stream=True)
        if r is None:
            raise RegistryError(f"{img.ref}: layer {layer.digest} missing from the registry")
        with r:
            reader = _HashingReader(r.raw, compressed)
            entries, dpkg, os_release, rpm = _index_tar(reader)
            reader.drain()
        if reader.compressed_hash.hexdigest() != layer.digest.split(":", 1)[1]:
            raise RegistryError(f"{img.ref}: layer {layer.digest}: the blob does not match its digest")
        return {"version": INDEX_VERSION, "digest": layer.digest, "diff_id": layer.diff_id,
                "uncompressed": reader.count, "entries": entries, "dpkg_status": dpkg,
                "os_release": os_release, "rpm_db": rpm}


class _HashingReader(io.RawIOBase):
    """The blob as a forward-only file: decompressed on the fly, the compressed bytes hashed (the blob's
    digest) and the uncompressed ones counted as tarfile reads them. A forward seek reads and drops,
    so tarfile can run in its ordinary mode (its stream mode copies its whole buffer on every small
    read). The blob digest is checked, so the diff_id is taken from the config as the registry gave it."""

    def __init__(self, raw, compressed: bool):
        self.raw = raw
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS) if compressed else None
        self.compressed_hash = hashlib.sha256()
        self.count = 0           # uncompressed bytes handed out (and dropped by seeks)
        self.buf = b""
        self.at = 0              # position in buf
        self.eof = False

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.count

    def seek(self, pos, whence=io.SEEK_SET):
        if whence == io.SEEK_CUR:
            pos += self.count
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a layer stream seeks forward from its start only")
        if pos < self.count:
            raise io.UnsupportedOperation(f"a layer stream cannot seek back ({pos} < {self.count})")
        while pos > self.count and self.read(min(pos - self.count, 1 << 20)):
            pass
        return self.count

    def _fill(self, n: int) -> None:
        if len(self.buf) - self.at >= n or self.eof:
            return
        parts = [self.buf[self.at:]]
        have = len(parts[0])
        while have < n and not self.eof:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                self.eof = True
                if self.z is not None:
                    parts.append(self.z.flush())
                break
            self.compressed_hash.update(chunk)
            if self.z is None:
                out = chunk
            else:
                out = self.z.decompress(chunk)
                while self.z.eof and self.z.unused_data:  # concatenated gzip members
                    rest = self.z.unused_data
                    self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    out += self.z.decompress(rest)
            parts.append(out)
            have += len(out)
        self.buf, self.at = b"".join(parts), 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        self._fill(n)
        out = self.buf[self.at:self.at + n]
        self.at += len(out)
        self.count += len(out)
        return out

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _index_tar(reader) -> Tuple[List[list], Optional[Dict[str, str]], Optional[Dict[str, str]], bool]:
    """[path, type, size, mode, sha256-or-link] per member; the dpkg status and os-release parsed."""
    entries: List[list] = []
    dpkg = os_release = None
    rpm = False
    tf = tarfile.open(fileobj=reader, mode="r:")
    while True:
        m = tf.next()  # one member at a time: read in order, the stream never seeks back
        if m is None:
            break
        tf.members.clear()  # keep no list of every member (tens of thousands in a big layer)
        path = m.name[2:] if m.name.startswith("./") else m.name.lstrip("/")
        path = path.rstrip("/")
        if not path or path == ".":
            continue
        if m.isreg():
            h = hashlib.sha256()
            data = b""
            fh = tf.extractfile(m)
            keep = path == DPKG_STATUS or path in OS_RELEASE
            while True:
                chunk = fh.read(1 << 20) if fh else b""
                if not chunk:
                    break
                h.update(chunk)
                if keep:
                    data += chunk
            if path == DPKG_STATUS:
                dpkg = parse_dpkg_status(data.decode("utf-8", "replace"))
            elif keep:
                os_release = parse_os_release(data.decode("utf-8", "replace"))
            entries.append([path, "f", m.size, m.mode, h.hexdigest()])
        elif m.isdir():
            entries.append([path, "d", 0, m.mode, None])
        elif m.issym():
            entries.append([path, "l", 0, m.mode, m.linkname])
        elif m.islnk():
            link = m.linkname[2:] if m.linkname.startswith("./") else m.linkname.lstrip("/")
            entries.append([path, "h", 0, m.mode, link])
        else:
            entries.append([path, "o", 0, m.mode, None])
        if any(path.startswith(d) for d in RPM_DB_DIRS):
            rpm = True
    return entries, dpkg, os_release, rpm


def parse_dpkg_status(text: str) -> Dict[str, str]:
    """package[:arch] -> version for the installed packages of a dpkg status file."""
    out: Dict[str, str] = {}
    for para in text.split("\n\n"):
        fields: Dict[str, str] = {}
        for line in para.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip()] = v.strip()
        name = fields.get("Package")
        if name and "installed" in fields.get("Status", "").split():
            arch = fields.get("Architecture")
            key = name if arch in (None, "all", "amd64") else f"{name}:{arch}"
            out[key] = fields.get("Version", "")
    return out


def parse_os_release(text: str) -> Dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out
