"""The Docker engine through the SDK's low-level API: connect, run a command in an image, read files."""
from __future__ import annotations

import io
import tarfile
from typing import Iterator, List, Optional, Tuple

import docker
import docker.errors
import requests

from release_manager.errors import EngineError

START_HINT = "start it with `sudo scripts/local-stack up` (or `sudo dockerd &`), or set DOCKER_HOST / RELMAN_DOCKER_HOST"


def connect(settings) -> docker.APIClient:
    """An APIClient with a timeout fit for real builds (the SDK's 60 s default is not)."""
    try:
        kw = {"timeout": settings.docker_timeout}
        if settings.docker_host:
            api = docker.APIClient(base_url=settings.docker_host, **kw)
        else:
            api = docker.APIClient(**docker.utils.kwargs_from_env(), **kw) \
                if docker.utils.kwargs_from_env().get("base_url") else docker.APIClient(**kw)
        api.ping()
        return api
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"the Docker engine is not reachable ({exc.__class__.__name__}); {START_HINT}") from None


def run(api: docker.APIClient, image: str, command: List[str], user: str = "root",
        binds: Optional[dict] = None, timeout: int = 600, workdir: Optional[str] = None,
        through_entrypoint: bool = False, read_only: bool = False, tmpfs: Optional[dict] = None,
        environment: Optional[dict] = None) -> Tuple[int, str]:
    """Run command (argv, no shell) in a throw-away container; (exit code, combined output).

    through_entrypoint: as a user would (the image's relman-entrypoint sets the environment up);
    otherwise the command runs bare. read_only and tmpfs: the farms' conditions (Apptainer)."""
    host_config = api.create_host_config(binds=binds or {}, network_mode="none", read_only=read_only,
                                         tmpfs=tmpfs or None)
    c = api.create_container(image, command=command, entrypoint=None if through_entrypoint else [], user=user,
                             host_config=host_config, environment=environment,
                             working_dir=workdir, labels={"relman.throwaway": "1"})
    try:
        api.start(c)
        rc = api.wait(c, timeout=timeout)["StatusCode"]
        out = api.logs(c, stdout=True, stderr=True).decode(errors="replace")
        return rc, out
    finally:
        api.remove_container(c, force=True)


def iter_files(api: docker.APIClient, image: str, path: str) -> Iterator[Tuple[str, bytes]]:
    """(path in image, content) of every regular file under path, read from a created (never started) container."""
    c = api.create_container(image, command=["true"], entrypoint=[], labels={"relman.throwaway": "1"})
    try:
        try:
            stream, _ = api.get_archive(c, path)
        except docker.errors.NotFound:
            return
        buf = io.BytesIO(b"".join(stream))
        base = path.rstrip("/").rsplit("/", 1)[0]
        with tarfile.open(fileobj=buf) as tar:
            for m in tar:
                if m.isfile():
                    f = tar.extractfile(m)
                    yield f"{base}/{m.name}", f.read()
    finally:
        api.remove_container(c, force=True)
