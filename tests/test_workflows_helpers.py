"""Fixtures of the workflow tests (imported by the other test_workflows_* modules). Everything is real:
the engine, the local registry, SQLite (a file per module, migrated by the code under test)."""
from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import git
import pytest

from release_manager.config import PROJECT_ROOT
from release_manager.spec import load_specs


@pytest.fixture(scope="module")
def wf_settings(settings, tmp_path_factory):
    """The session settings with this module's own SQLite database (migrated)."""
    from release_manager.db import migrate
    from release_manager.db.connection import connect
    url = f"sqlite:///{tmp_path_factory.mktemp('wfdb') / 'relman.db'}"
    migrate.upgrade(connect(url))
    return settings.model_copy(update={"db_url": url})


@pytest.fixture(scope="module")
def wf_db(wf_settings):
    from release_manager.db.connection import connect
    return connect(wf_settings.database_url)


def make_ctx(settings, specs, api, db, lines=None, actor="wf-test"):
    from release_manager.workflows.common import Context
    lines = [] if lines is None else lines
    return Context(settings, specs, echo=lines.append, api=api, db=db, actor=actor)


@pytest.fixture(scope="session")
def host_reference(settings, demo_repo):
    """The bare-metal build of evtselect v1.1.0 the spec's verification compares with."""
    from release_manager.demo import host_build
    prefix = settings.data_dir / "host-build" / "evtselect"
    if not (prefix / "bin" / "evtselect").exists():
        host_build(demo_repo, "v1.1.0", prefix, echo=lambda m: None)
    return prefix


def own_package(tmp_path: Path, demo_repo: Path, name: str):
    """A clone of the demo repository and a copy of the evtselect spec under another package name (its own
    registry repository: what these tests tag, delete and collect touches nobody else's images)."""
    repo = tmp_path / f"{name}-src"
    git.Repo.clone_from(str(demo_repo), str(repo), branch="main")
    d = tmp_path / f"{name}-specs"
    d.mkdir()
    shutil.copy(PROJECT_ROOT / "image_specs" / "platforms.yaml", d)
    text = (PROJECT_ROOT / "image_specs" / "evtselect.yaml").read_text()
    text = text.replace("name: evtselect", f"name: {name}").replace('git: "{data_dir}/repos/evtselect"',
                                                                     f'git: "file://{repo}"')
    assert f'git: "file://{repo}"' in text
    (d / f"{name}.yaml").write_text(text)
    return repo, load_specs(d)


def drop_repository(settings, path: str, api=None) -> None:
    """Delete every manifest of a registry repository a test made, and with `api` the package's local images
    (keeps the shared registry and engine small; the layers the cache needs stay)."""
    from release_manager.registry import Registry
    reg = Registry(settings.registry)
    digests = {reg.manifest_digest(path, t) for t in reg.tags(path)} - {None}
    for d in digests:
        reg.delete_manifest(path, d)
    if api is not None:
        import docker.errors
        for img in api.images(filters={"label": f"relman.package={path.rsplit('/', 1)[1]}"}):
            try:
                api.remove_image(img["Id"], force=True, noprune=True)
            except docker.errors.APIError:
                pass


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """A local HTTP endpoint that records what is POSTed to it: (url, list of {path, body})."""
    received = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/SECRET-TOKEN-123", received
    server.shutdown()
    server.server_close()
