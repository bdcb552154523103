"""Faults in the middle of a workflow: the engine goes away during a build, the registry during a push,
another process holds the database. Each ends in a clear RelmanError (what failed, what to do), nothing
is recorded as pushed that the registry lacks, and `reconcile` finds the database and registry in step.

The shared engine and the shared registries (5000, 5001) are never stopped: other tests and benchmarks
use them. The engine is reached through a socket relay this module starts (socat): killing the relay's
process group is, for relman, exactly a dockerd that died (every connection drops, the socket answers
no more), and the relay comes back the way `scripts/local-stack up` brings dockerd back. The registry
is a third one, this module's own (Debian's docker-registry on a free port)."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from test_workflows_helpers import drop_repository, make_ctx, own_package, wf_db, wf_settings  # noqa: F401

from release_manager.build import Builder
from release_manager.errors import BuildError, EngineError, EngineLost, RegistryError
from release_manager.spec import load_specs
from release_manager.workflows.common import image_rows, record_failed_results, record_result
from release_manager.workflows.nightly import NightlyFailed, run_nightly
from release_manager.workflows.reconcile import LIVE, reconcile

ENGINE_SOCKET = "/var/run/docker.sock"


def _edit_spec(specs, edit):
    y = next(iter(specs.packages.values())).path
    y.write_text(edit(y.read_text()))
    return load_specs(y.parent)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of a process this module started (a relay and its forks, a registry)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


def _no_pushed_rows_missing(ctx, package):
    rep = reconcile(ctx, package=package)
    assert rep["status"] == "clean" and not rep["missing"], rep
    return rep


# ---------------------------------------------------------------------- a. the engine goes away mid-build

class EngineRelay:
    """unix socket -> the engine's socket, one forked socat per connection, all in one process group."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="relman-eng-", dir="/tmp"))
        self.socket = self.dir / "docker.sock"
        self.proc = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def up(self):
        self.proc = subprocess.Popen(["socat", f"UNIX-LISTEN:{self.socket},fork,unlink-early,mode=600",
                                      f"UNIX-CONNECT:{ENGINE_SOCKET}"], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.socket.exists():
                return
            time.sleep(0.05)
        raise AssertionError("the engine relay did not start")

    def kill(self):
        if self.proc is not None:
            _kill_group(self.proc)
        self.socket.unlink(missing_ok=True)

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def relay():
    r = EngineRelay()
    r.up()
    try:
        yield r
    finally:
        r.close()
        # whatever happened, later tests need the engine: it answers (it was never stopped)
        for _ in range(60):
            if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        else:
            subprocess.run(["scripts/local-stack", "up"], check=False)


def test_engine_dies_mid_build(wf_settings, wf_db, api, demo_repo, tmp_path, relay):
    name = f"wf{uuid.uuid4().hex[:6]}"
    _, specs = own_package(tmp_path, demo_repo, name)
    specs = _edit_spec(specs, lambda t: t.replace("    - make -j2\n", "    - sleep 20\n    - make -j2\n")
                       .replace("variants: [runtime, debug, full]}", "variants: [runtime]}"))
    settings = wf_settings.model_copy(update={"docker_host": relay.url})
    lines = []
    in_sleep = threading.Event()

    def echo(line):
        lines.append(line)
        if line.startswith("Step ") and "sleep 20" in line:
            in_sleep.set()

    ctx = make_ctx(settings, specs, None, wf_db)
    ctx.echo = echo
    outcome = {}

    def nightly():
        try:
            outcome["report"] = run_nightly(ctx, name, dt.date(2026, 10, 1), verify=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    t0 = time.monotonic()
    th = threading.Thread(target=nightly, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 120
        while not in_sleep.wait(0.2) and th.is_alive() and time.monotonic() < deadline:
            pass
        assert in_sleep.is_set(), f"the build never reached the slow step: {outcome}\n" + "\n".join(lines[-20:])
        time.sleep(1.5)                                    # the step's container is running now
        relay.kill()                                       # the engine is gone
        th.join(60)
        assert not th.is_alive(), "the nightly did not end after the engine went away"
        seconds = time.monotonic() - t0
        err = outcome.get("error")
        assert isinstance(err, NightlyFailed), outcome
        cause = err.__context__
        assert isinstance(cause, EngineLost) and isinstance(cause, BuildError) and isinstance(cause, EngineError)
        msg = str(err)
        assert "the Docker engine went away during the build" in msg and "sleep 20" in msg, msg
        assert "scripts/local-stack up" in msg, msg
        rep = err.report
        assert rep["status"] == "failed" and rep["recorded_failures"]
        result = json.loads((settings.results_dir / name / "main" / "runtime.json").read_text())
        assert result["status"] == "failed" and result["pushed"] is False and "went away" in result["message"]
        rows = image_rows(ctx, name)
        assert rows and all(r["status"] == "failed" and not r["digest"] for r in rows), rows
        # the engine comes back (scripts/local-stack up): relman reaches it again, the database is consistent
        relay.up()
        ctx2 = make_ctx(settings, specs, None, wf_db)
        assert ctx2.engine().ping()
        _no_pushed_rows_missing(ctx2, name)
        print(f"\nengine fault: failed cleanly {seconds:.1f} s after the start: {msg}")
    finally:
        th.join(30)
        drop_repository(wf_settings, f"fermi-lat/{name}", api)


# ---------------------------------------------------------------------- b. the registry goes away mid-push

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRegistry:
    def __init__(self, root: Path):
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.config = root / "config.yml"
        self.log = root / "registry.log"
        (root / "data").mkdir(parents=True)
        self.config.write_text("version: 0.1\nlog: {level: warn}\nstorage:\n"
                               f"  filesystem: {{rootdirectory: {root / 'data'}}}\n  delete: {{enabled: true}}\n"
                               f"http: {{addr: {self.host}}}\n")
        self.proc = None

    def up(self):
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], start_new_session=True,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                if requests.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"own registry did not start: {self.log.read_text()[-500:]}")

    def kill(self):
        if self.proc is not None:
            _kill_group(self.proc)


@pytest.fixture
def own_registry(tmp_path):
    reg = OwnRegistry(tmp_path / "registry")
    reg.up()
    yield reg
    reg.kill()


class KillOnBigLayer:
    """The engine client, except that push() kills the registry once a big layer is on its way."""

    def __init__(self, api, kill, min_bytes=100_000_000):
        self._api, self._kill, self._min = api, kill, min_bytes
        self.killed_at = None

    def __getattr__(self, name):
        return getattr(self._api, name)

    def push(self, *args, **kw):
        for item in self._api.push(*args, **kw):
            d = item.get("progressDetail") or {}
            if (self.killed_at is None and item.get("status") == "Pushing" and d.get("total", 0) >= self._min
                    and d.get("current", 0) > 0):
                self.killed_at = d["current"]
                self._kill()
            yield item


def test_registry_dies_mid_push(wf_settings, wf_db, api, demo_repo, tmp_path, own_registry):
    name = f"wf{uuid.uuid4().hex[:6]}"
    _, specs = own_package(tmp_path, demo_repo, name)
    settings = wf_settings.model_copy(update={"registry": own_registry.host})
    path = f"fermi-lat/{name}"
    try:
        # an image that made it: pushed and recorded
        ctx = make_ctx(settings, specs, api, wf_db)
        [first] = Builder(settings, specs, echo=lambda m: None, api=api).build(name, "v1.1.0", ["runtime"], push=True)
        assert first.pushed and first.digest
        record_result(ctx, first.as_dict())
        # then a runtime with a 200 MB layer; the registry dies while that layer goes up
        big = _edit_spec(specs, lambda t: t.replace(
            "    - make install PREFIX=/opt/evtselect\n",
            "    - make install PREFIX=/opt/evtselect\n    - head -c 200000000 /dev/urandom > /opt/evtselect/big.bin\n")
            .replace("runtime: {max: 150MB, on_exceed: fail}", "runtime: {max: 800MB, on_exceed: warn}"))
        killer = KillOnBigLayer(api, own_registry.kill)
        ctx = make_ctx(settings, big, killer, wf_db)
        t0 = time.monotonic()
        with pytest.raises(RegistryError) as exc:
            Builder(settings, big, echo=lambda m: None, api=killer).build(name, "v1.1.0", ["runtime"], push=True)
        seconds = time.monotonic() - t0
        assert killer.killed_at is not None, "the big layer was never seen going up"
        msg = str(exc.value)
        assert f"push of {own_registry.host}/{path}:v1.1.0-runtime failed" in msg, msg
        assert f"the registry {own_registry.host} stopped answering during the push" in msg, msg
        assert "not recorded as pushed" in msg
        result = json.loads((settings.results_dir / name / "v1.1.0" / "runtime.json").read_text())
        assert result["status"] == "failed" and result["pushed"] is False and not result["digest"]
        [failed_row] = record_failed_results(ctx, name, "v1.1.0", ["runtime"])
        rows = {r["id"]: r for r in image_rows(ctx, name)}
        assert rows[failed_row]["status"] == "failed" and not rows[failed_row]["digest"]
        assert [r["digest"] for r in rows.values() if r["status"] in LIVE] == [first.digest]
        # the registry comes back with its storage: the first image is there, nothing else was recorded
        own_registry.up()
        rep = _no_pushed_rows_missing(ctx, name)
        from release_manager.registry import Registry
        assert Registry(own_registry.host).manifest_digest(path, "v1.1.0-runtime") == first.digest
        print(f"\nregistry fault: failed cleanly after {seconds:.1f} s (the engine retries a layer 5 times); "
              f"reconcile: {rep['message']}")
    finally:
        if own_registry.proc.poll() is None:
            drop_repository(settings, path, api)
        else:
            drop_repository(wf_settings, path, api)        # local images only: the shared registry has none


# ---------------------------------------------------------------------- c. the database is locked

def _result_file(tmp_path: Path, settings, name: str) -> Path:
    doc = {"package": name, "ref": "v1.1.0", "commit": "a" * 40, "variant": "runtime", "target": "runtime",
           "build_key": uuid.uuid4().hex * 2, "repository": f"{settings.registry}/fermi-lat/{name}",
           "tags": ["v1.1.0-runtime"], "status": "built", "pushed": False, "image_id": "sha256:" + "b" * 64,
           "started": "2026-10-01T03:00:00Z", "finished": "2026-10-01T03:05:00Z"}
    p = tmp_path / "runtime.json"
    p.write_text(json.dumps(doc))
    return p


def test_locked_database_fails_in_bounded_time_then_records(wf_settings, tmp_path):
    db_file = wf_settings.database_url.split("sqlite:///", 1)[1]
    name = f"wf{uuid.uuid4().hex[:6]}"
    result = _result_file(tmp_path, wf_settings, name)
    env = dict(os.environ, RELMAN_DB_URL=wf_settings.database_url, RELMAN_DB_LOCK_TIMEOUT="2",
               RELMAN_DATA_DIR=str(wf_settings.data_dir))
    holder = sqlite3.connect(db_file, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        r = subprocess.run(["relman", "db", "record-build", str(result)], env=env, capture_output=True, text=True,
                           timeout=60)
        seconds = time.monotonic() - t0
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert f"the database sqlite:///{db_file} is locked" in out, out
        assert "RELMAN_DB_LOCK_TIMEOUT=2" in out and "Traceback" not in out, out
        assert seconds < 15, seconds
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r = subprocess.run(["relman", "db", "record-build", str(result), "--json"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)[0]["action"] == "created"
    print(f"\ndatabase lock: failed cleanly after {seconds:.1f} s (RELMAN_DB_LOCK_TIMEOUT=2)")


def test_lock_timeout_setting(wf_settings, monkeypatch):
    from release_manager.db.connection import connect, for_settings, resolve_lock_timeout
    from release_manager.errors import UsageError
    assert resolve_lock_timeout() == 30.0
    monkeypatch.setenv("RELMAN_DB_LOCK_TIMEOUT", "7.5")
    assert resolve_lock_timeout() == 7.5 and connect(wf_settings.database_url).lock_timeout == 7.5
    assert for_settings(wf_settings.model_copy(update={"db_lock_timeout": 3})).lock_timeout == 3
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("RELMAN_DB_LOCK_TIMEOUT", bad)
        with pytest.raises(UsageError, match="RELMAN_DB_LOCK_TIMEOUT"):
            resolve_lock_timeout()
