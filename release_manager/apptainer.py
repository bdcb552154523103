"""Apptainer, run inside its tool image (scripts/farm/apptainer-image) through the Docker SDK.

Apptainer is not packaged for Debian 12 and sid's build needs a newer glibc, so every call here is a
throw-away `docker run` of the tool image. This module is the one place that knows the privileges it
needs on these machines (see docs/apptainer.md):

    --network host                      the registry on 127.0.0.1
    --security-opt seccomp=unconfined   else no user namespace
    --security-opt systempaths=unconfined   else --containall cannot mount /proc (through the API:
                                        MaskedPaths=[] and ReadonlyPaths=[], what the CLI sends)
    --device /dev/fuse                  else squashfuse cannot mount the SIF
    --security-opt apparmor=unconfined  only where the engine runs AppArmor
Never --privileged (runc refuses: "unable to apply caps") and never SYS_ADMIN (root then wants loop
devices). Host paths are bound at the same path inside, so a path means the same thing on both sides.
A non-root caller (`uid`) runs through setpriv after /dev/fuse is opened to it, with a passwd entry
made for it when the tool image has none (Apptainer looks the caller up).
"""
from __future__ import annotations

import hashlib
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from release_manager.errors import EngineError, RelmanError

SECURITY_OPT = ["seccomp=unconfined"]
KEY_MOUNT = "/run/relman-signing/key.pem"     # where a signing key is bound, read-only, for one `sign` call
TOOL_HINT = "make it with `scripts/farm/apptainer-image` (as root)"

# Runs as root in the tool container, then drops to uid:gid; the argv comes as "$@", never through the shell's parser.
_DROP = ('chmod 666 /dev/fuse && { getent passwd "$RELMAN_UID" >/dev/null || '
         'echo "relman:x:$RELMAN_UID:$RELMAN_GID:relman:/nonexistent:/bin/sh" >>/etc/passwd; } && '
         'exec setpriv --reuid="$RELMAN_UID" --regid="$RELMAN_GID" --clear-groups -- "$@"')


class ApptainerError(RelmanError):
    """Apptainer (or its tool image) failed; the message holds the command's last output."""


@dataclass
class Result:
    argv: List[str]
    exit_code: int
    output: str
    seconds: float


@dataclass
class Bind:
    path: Path
    read_only: bool = True


class Apptainer:
    """Apptainer commands in throw-away containers of the tool image."""

    def __init__(self, api, image: str = "relman/apptainer:sid", nohttps: bool = True, timeout: int = 3600):
        self.api = api
        self.image = image
        self.nohttps = nohttps
        self.timeout = timeout
        self._version: Optional[str] = None

    # ------------------------------------------------------------------ the one docker run

    def host_config(self, binds: Iterable[Bind], secret_file: Optional[Tuple[Path, str]] = None,
                    network: bool = True) -> dict:
        opts = list(SECURITY_OPT)
        if _apparmor(self.api):
            opts.append("apparmor=unconfined")
        volumes = {str(b.path): {"bind": str(b.path), "mode": "ro" if b.read_only else "rw"} for b in binds}
        if secret_file:
            volumes[str(secret_file[0])] = {"bind": secret_file[1], "mode": "ro"}
        hc = self.api.create_host_config(binds=volumes, network_mode="host" if network else "none",
                                         security_opt=opts, devices=["/dev/fuse:/dev/fuse:rwm"])
        # `--security-opt systempaths=unconfined` is the docker CLI's spelling: the engine's API refuses it and
        # wants what the CLI sends instead, empty masked and read-only path lists.
        hc["MaskedPaths"] = []
        hc["ReadonlyPaths"] = []
        return hc

    def run(self, argv: Sequence[str], binds: Iterable[Bind] = (), uid: Optional[int] = None,
            gid: Optional[int] = None, env: Optional[Dict[str, str]] = None, workdir: Optional[Path] = None,
            check: bool = True, what: str = "", secret_file: Optional[Tuple[Path, str]] = None,
            network: bool = True) -> Result:
        """argv (starting with `apptainer`) in the tool image; as uid:gid when given, else root."""
        import docker.errors
        environment = dict(env or {})
        if self.nohttps:
            environment["APPTAINER_NOHTTPS"] = "1"      # the plain-HTTP local registry
        command = list(argv)
        if uid is not None:
            environment.update(RELMAN_UID=str(uid), RELMAN_GID=str(gid if gid is not None else uid))
            command = ["sh", "-c", _DROP, "relman-drop", *command]
        c = None
        t0 = time.monotonic()
        try:
            c = self.api.create_container(self.image, command=command, entrypoint=[], environment=environment,
                                          host_config=self.host_config(binds, secret_file, network), labels={"relman.throwaway": "1"},
                                          working_dir=str(workdir) if workdir else None)
            self.api.start(c)
            try:
                rc = self.api.wait(c, timeout=self.timeout)["StatusCode"]
            except Exception:  # noqa: BLE001 - requests' ReadTimeout and friends
                self.api.kill(c)
                raise ApptainerError(f"{what or argv[1]}: still running after {self.timeout} s; stopped") from None
            out = self.api.logs(c, stdout=True, stderr=True).decode(errors="replace")
        except docker.errors.ImageNotFound:
            raise ApptainerError(f"the Apptainer tool image {self.image} is missing: {TOOL_HINT}") from None
        except docker.errors.APIError as exc:
            raise EngineError(f"running Apptainer in {self.image}: {exc.explanation or exc}") from None
        finally:
            if c is not None:
                try:
                    self.api.remove_container(c, force=True)
                except Exception:  # noqa: BLE001
                    pass
        res = Result(list(argv), rc, out, round(time.monotonic() - t0, 3))
        if check and rc != 0:
            tail = "\n  ".join(out.strip().splitlines()[-12:])
            raise ApptainerError(f"{what or shlex.join(argv[:2])} failed (exit {rc}):\n  {tail}")
        return res

    # ------------------------------------------------------------------ commands

    def version(self) -> str:
        if self._version is None:
            out = self.run(["apptainer", "--version"], what="apptainer --version").output.strip().splitlines()
            self._version = (out[-1] if out else "").replace("apptainer version", "").strip() or "unknown"
        return self._version

    def build(self, sif: Path, source: str, binds: Iterable[Bind] = (), env: Optional[Dict[str, str]] = None) -> Result:
        """source: docker://HOST/REPO@sha256:..., docker-archive://FILE.tar, ... ; sif's folder must exist."""
        sif = Path(sif)
        return self.run(["apptainer", "build", "--force", str(sif), source],
                        binds=[Bind(sif.parent, read_only=False), *binds], env=env, workdir=sif.parent,
                        what=f"apptainer build {sif.name} from {source}")

    def sign(self, sif: Path, key: Path) -> Result:
        """Sign with a PEM private key, bound read-only at KEY_MOUNT for this call only (its host path and
        name are not shown to Apptainer, and the call has no network)."""
        sif = Path(sif)
        return self.run(["apptainer", "sign", "--key", KEY_MOUNT, str(sif)], binds=[Bind(sif.parent, read_only=False)],
                        secret_file=(Path(key), KEY_MOUNT), network=False, what=f"apptainer sign {sif.name}")

    def verify(self, sif: Path, public_key: Path) -> Result:
        """`apptainer verify --key PUB`; exit code in the result (a tampered SIF is not an exception)."""
        sif, public_key = Path(sif), Path(public_key)
        return self.run(["apptainer", "verify", "--key", str(public_key), str(sif)],
                        binds=[Bind(sif.parent), Bind(public_key)], check=False, what=f"apptainer verify {sif.name}")

    def push(self, sif: Path, oras_ref: str) -> Result:
        sif = Path(sif)
        return self.run(["apptainer", "push", str(sif), oras_ref], binds=[Bind(sif)],
                        what=f"apptainer push {sif.name} {oras_ref}")

    def pull(self, oras_ref: str, dest: Path) -> Result:
        dest = Path(dest)
        argv = ["apptainer", "pull", "--force"] + (["--no-https"] if self.nohttps else []) + [str(dest), oras_ref]
        return self.run(argv, binds=[Bind(dest.parent, read_only=False)], workdir=dest.parent,
                        what=f"apptainer pull {oras_ref}")

    def exec(self, sif: Path, argv: Sequence[str], binds: Dict[str, Tuple[Path, bool]], uid: int, gid: int,
             pwd: Optional[str] = None, check: bool = False) -> Result:
        """`apptainer exec --containall` (read-only image, the caller's uid, no HOME, clean environment).
        binds: {path inside the SIF: (host path, read_only)}."""
        sif = Path(sif)
        args = ["apptainer", "exec", "--containall"]
        for inside, (host, ro) in binds.items():
            args += ["--bind", f"{host}:{inside}" + (":ro" if ro else "")]
        if pwd:
            args += ["--pwd", pwd]
        args += [str(sif), *argv]
        tool_binds = [Bind(sif)] + [Bind(Path(h), read_only=ro) for h, ro in binds.values()]
        return self.run(args, binds=tool_binds, uid=uid, gid=gid, check=check, what=f"apptainer exec {sif.name}")


def _apparmor(api) -> bool:
    try:
        return any("apparmor" in o for o in api.info().get("SecurityOptions") or [])
    except Exception:  # noqa: BLE001 - no info: the option is only needed where AppArmor runs
        return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
