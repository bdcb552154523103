"""The registry's v2 API through requests: manifest digests, retag by manifest copy, tag listing, deletes.

Pushing goes through the engine (docker SDK); everything read back from the registry goes
through here, so a push is only believed once the registry itself answers with the digest.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import requests

from release_manager.errors import RegistryError, UsageError

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self):  # never show the password, even in a traceback
        return f"Credentials(username={self.username!r}, password='***')"

    def docker_auth(self):
        return {"username": self.username, "password": self.password}


def load_credentials(settings, registry: str) -> Optional[Credentials]:
    """From RELMAN_REGISTRY_USER/RELMAN_REGISTRY_PASSWORD, or the credentials file (JSON keyed by registry)."""
    if settings.registry_user and settings.registry_password:
        return Credentials(settings.registry_user, settings.registry_password.get_secret_value())
    path: Optional[Path] = settings.registry_credentials_file
    if path:
        try:
            data = json.loads(Path(path).read_text())
            entry = data[registry]
            return Credentials(entry["username"], entry["password"])
        except FileNotFoundError:
            raise UsageError(f"RELMAN_REGISTRY_CREDENTIALS_FILE={path}: no such file") from None
        except (KeyError, TypeError, json.JSONDecodeError):
            raise UsageError(f"{path}: expected JSON {{\"{registry}\": {{\"username\": ..., \"password\": ...}}}}")
    return None


class Registry:
    def __init__(self, host: str, credentials: Optional[Credentials] = None, insecure: bool = True,
                 retries: int = 3, timeout: float = 30.0):
        self.host = host
        self.base = f"{'http' if insecure else 'https'}://{host}/v2"
        self.session = requests.Session()
        if credentials:
            self.session.auth = (credentials.username, credentials.password)
        self.retries = max(1, retries)
        self.timeout = timeout

    def _request(self, method: str, path: str, ok=(200,), **kw) -> requests.Response:
        url = f"{self.base}/{path}"
        last: Optional[Exception] = None
        for attempt in range(self.retries):
            try:
                r = self.session.request(method, url, timeout=self.timeout, **kw)
            except requests.ConnectionError as exc:
                last = exc
                time.sleep(min(0.5 * 2 ** attempt, 4))
                continue
            if r.status_code in ok or r.status_code == 404:
                return r
            if r.status_code == 401:
                raise RegistryError(f"registry {self.host} refused {method} {path}: 401 unauthorized "
                                    "(set RELMAN_REGISTRY_USER/RELMAN_REGISTRY_PASSWORD or the credentials file)")
            if r.status_code >= 500:
                last = RegistryError(f"{r.status_code} {r.text[:200]}")
                time.sleep(min(0.5 * 2 ** attempt, 4))
                continue
            raise RegistryError(f"registry {self.host}: {method} {path} answered {r.status_code}: {r.text[:300]}")
        raise RegistryError(f"registry {self.host} unreachable after {self.retries} attempt(s): {last}")

    def ping(self) -> None:
        self._request("GET", "", ok=(200,))

    def manifest_digest(self, repo: str, ref: str) -> Optional[str]:
        """The manifest digest of repo:ref (a tag or digest), or None when absent."""
        r = self._request("HEAD", f"{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPES})
        if r.status_code == 404:
            return None
        return r.headers.get("Docker-Content-Digest")

    def get_manifest(self, repo: str, ref: str) -> Optional[Tuple[bytes, str, str]]:
        """(raw bytes, media type, digest) or None."""
        r = self._request("GET", f"{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPES})
        if r.status_code == 404:
            return None
        return r.content, r.headers.get("Content-Type", ""), r.headers.get("Docker-Content-Digest", "")

    def put_manifest(self, repo: str, tag: str, raw: bytes, media_type: str) -> str:
        r = self._request("PUT", f"{repo}/manifests/{tag}", ok=(201,), data=raw,
                          headers={"Content-Type": media_type})
        if r.status_code == 404:
            raise RegistryError(f"registry {self.host}: repository {repo} not found")
        return r.headers.get("Docker-Content-Digest", "")

    def image_config(self, repo: str, ref: str) -> Optional[dict]:
        """The image config (entrypoint, rootfs.diff_ids...) of repo:ref, or None when the manifest is absent
        or has no config (an index, an artifact)."""
        got = self.get_manifest(repo, ref)
        if got is None:
            return None
        config = (json.loads(got[0]).get("config") or {}).get("digest")
        blob = self.blob(repo, config) if config else None
        return blob.json() if blob is not None else None

    def retag(self, repo: str, src: str, dest: str) -> str:
        """Copy the manifest of src to tag dest (no rebuild, no blob transfer); returns the digest."""
        got = self.get_manifest(repo, src)
        if got is None:
            raise RegistryError(f"{self.host}/{repo}:{src} not found in the registry")
        raw, media_type, digest = got
        new = self.put_manifest(repo, dest, raw, media_type)
        if new != digest:
            raise RegistryError(f"retag {repo}:{src} -> {dest}: digest changed ({digest} -> {new})")
        return new

    def tags(self, repo: str) -> List[str]:
        r = self._request("GET", f"{repo}/tags/list")
        if r.status_code == 404:
            return []
        return sorted(r.json().get("tags") or [])

    def delete_manifest(self, repo: str, digest: str) -> bool:
        r = self._request("DELETE", f"{repo}/manifests/{digest}", ok=(202,))
        return r.status_code == 202

    def blob(self, repo: str, digest: str, stream: bool = False) -> Optional[requests.Response]:
        """GET a blob (an image config or a layer), or None when absent; with stream, the body is read
        by the caller (close the response)."""
        r = self._request("GET", f"{repo}/blobs/{digest}", stream=stream)
        return None if r.status_code == 404 else r
