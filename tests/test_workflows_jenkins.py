"""The nightly as Jenkins runs it: the package's jobs synced to the Jenkins stand-in (`relman jobs sync
--only`), the nightly job triggered (`relman jobs trigger --wait`, python-jenkins), the stand-in executing the
job's stages with the local runner (`relman pipeline prepare`, then `relman nightly PKG` in a subprocess).
It must reach what `relman nightly` run by hand reaches: the same images, tags, aliases and rows."""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import uuid

from click.testing import CliRunner

from jenkins_standin import TOKEN, JenkinsStandin
from test_workflows_helpers import (drop_repository, host_reference, make_ctx, own_package, wf_db,  # noqa: F401
                                    wf_settings)

from release_manager.cli import main
from release_manager.jenkins.model import build_jobs
from release_manager.jenkins.runner import StageFailed, run_local
from release_manager.registry import Registry
from release_manager.workflows.common import image_rows


def test_nightly_triggered_through_jenkins_matches_a_direct_run(wf_settings, wf_db, api, demo_repo, host_reference,
                                                                 tmp_path, monkeypatch):
    name = f"wf{uuid.uuid4().hex[:6]}"
    path = f"fermi-lat/{name}"
    _, specs = own_package(tmp_path, demo_repo, name)
    specs_dir = next(iter(specs.packages.values())).path.parent
    env = dict(os.environ, RELMAN_DB_URL=wf_settings.database_url, RELMAN_SPECS_DIR=str(specs_dir),
               RELMAN_DATA_DIR=str(wf_settings.data_dir), RELMAN_ACTOR="jenkins")
    for k in ("RELMAN_SUMMARY_DIR", "JENKINS_URL", "WORKSPACE"):
        env.pop(k, None)
    jobs = build_jobs(specs, wf_settings)
    consoles, lock = {}, threading.Lock()

    def executor(job, params):                     # what the agent does: the job's stages, in order
        lines = []
        with lock:
            try:
                run_local(jobs.get(job), params, tmp_path / "ws" / job.replace("/", "_"), echo=lines.append,
                          base_env=env)
                result = "SUCCESS"
            except StageFailed as exc:
                lines.append(str(exc))
                result = "FAILURE"
        consoles[job] = lines
        return result, "\n".join(lines + [f"Finished: {result}"])

    for k, v in (("RELMAN_JENKINS_URL", None), ("RELMAN_JENKINS_USER", "admin"), ("RELMAN_JENKINS_TOKEN", TOKEN),
                 ("RELMAN_DB_URL", wf_settings.database_url), ("RELMAN_SPECS_DIR", str(specs_dir))):
        if v is not None:
            monkeypatch.setenv(k, v)
    try:
        with JenkinsStandin(executor=executor) as server:
            monkeypatch.setenv("RELMAN_JENKINS_URL", server.url)
            cli = CliRunner()
            r = cli.invoke(main, ["jobs", "sync", "--only", name])
            assert r.exit_code == 0, r.output
            assert f"{name}/nightly" in server.items and not any(j.startswith("evtselect") for j in server.items)
            t0 = time.monotonic()
            r = cli.invoke(main, ["jobs", "trigger", f"{name}/nightly", "--wait", "--poll", "0.2", "--timeout", "600"])
            jenkins_seconds = time.monotonic() - t0
            assert r.exit_code == 0, r.output + "\n".join(consoles.get(f"{name}/nightly", []))
            assert f"{name}/nightly #1: SUCCESS" in r.output and TOKEN not in r.output
            stages = [line for line in consoles[f"{name}/nightly"] if line.startswith("[") and "note:" not in line]
            assert stages == [f"[Prepare] relman pipeline prepare {name}/nightly", f"[Nightly] relman nightly {name}"]

        # what the Jenkins run left: dated tags, moved aliases, verified rows
        day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
        reg = Registry(wf_settings.registry)
        rows = {r["variant"]: r for r in image_rows(make_ctx(wf_settings, specs, api, wf_db), name)}
        assert set(rows) == {"runtime", "debug", "full"}
        for v, row in rows.items():
            assert row["status"] == "verified" and row["verdict"] == "passed" and row["requested_by"] is None, row
            assert {f"nightly-{day}-{v}", f"nightly-{v}", f"main-{v}"} <= set(row["tags"]), row["tags"]
            assert reg.manifest_digest(path, f"nightly-{day}-{v}") == row["digest"]
            assert reg.manifest_digest(path, f"nightly-{v}") == row["digest"]
        jenkins_digests = {v: row["digest"] for v, row in rows.items()}

        # `relman nightly` by hand now: nothing changed since the Jenkins nightly of today
        r = CliRunner().invoke(main, ["nightly", name, "--json"])
        assert r.exit_code == 0, r.output
        direct = json.loads(r.stdout)
        assert direct["status"] == "skipped" and direct["last_nightly"] == day
        assert {i["variant"]: i["digest"] for i in direct["images"]} == jenkins_digests
        # and forced, it arrives at the very same images (the build keys are the same: nothing rebuilt)
        t0 = time.monotonic()
        r = CliRunner().invoke(main, ["nightly", name, "--force", "--no-verify", "--json"])
        direct_seconds = time.monotonic() - t0
        assert r.exit_code == 0, r.output
        forced = json.loads(r.stdout)
        assert forced["status"] == "unverified"
        assert {i["variant"]: i["digest"] for i in forced["images"]} == jenkins_digests
        assert {i["variant"]: i["tag"].rsplit(":", 1)[1] for i in forced["images"]} == \
            {v: f"nightly-{day}-{v}" for v in jenkins_digests}
        assert {v: r["digest"] for v, r in
                {r["variant"]: r for r in image_rows(make_ctx(wf_settings, specs, api, wf_db), name)}.items()} \
            == jenkins_digests                                   # no new rows: the same images
        for v, d in jenkins_digests.items():
            assert reg.manifest_digest(path, f"nightly-{v}") == d
        print(f"\nnightly through Jenkins: {jenkins_seconds:.1f} s; by hand (forced, no verification): "
              f"{direct_seconds:.1f} s")
    finally:
        drop_repository(wf_settings, path, api)
