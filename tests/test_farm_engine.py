"""Real farm runs on the local stack: Grid Engine and Slurm (scripts/farm/*), the Docker engine, the
local registry and the demo runtime image; Apptainer from its tool image (scripts/farm/apptainer-image).
Jobs run as the farm user; nothing here is mocked."""
from __future__ import annotations

import hashlib
import json
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from astropy.io import fits
from click.testing import CliRunner

from release_manager.cli import main
from release_manager.config import PROJECT_ROOT
from release_manager.farm import accounting
from release_manager.errors import NotFound
from release_manager.farm.site import load_site

from conftest import FT1_3FHL
from test_verify_e2e import host_reference  # noqa: F401 - fixture: the demo's bare-metal build (scale tests' reference)

pytestmark = pytest.mark.engine
SCHEDULERS = ["sge", "slurm"]
TOOL_IMAGE = "relman/apptainer:sid"
SIF_REPO = "127.0.0.1:5000/farm-12b/evtselect"   # this module's own repository for the SIF it pushes


@pytest.fixture(scope="module", autouse=True)
def farm_db(tmp_path_factory):
    """This module's own release database (SQLite, migrated): every run it submits is recorded there."""
    from release_manager.db import connect, migrate
    url = f"sqlite:///{tmp_path_factory.mktemp('farm-db') / 'relman.db'}"
    db = connect(url, fresh=True)
    migrate.upgrade(db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELMAN_DB_URL", url)
        yield db


def runs_of(db, **kw):
    from release_manager.db.farm import list_farm_runs
    with db.read() as s:
        return list_farm_runs(s, limit=None, **kw)


def detail(db, job):
    from release_manager.db.farm import farm_run_detail
    with db.read() as s:
        return farm_run_detail(s, job["job_id"], job["site"])


@pytest.fixture(scope="module")
def farm():
    """The local schedulers up (idempotent: about a second when they already are) and the input in the
    sites' scratch area; returns the farm user's passwd entry."""
    for part in ("gridengine", "slurm"):
        subprocess.run([str(PROJECT_ROOT / "scripts" / "farm" / part), "up"], check=True, capture_output=True)
    scratch = Path(load_site("local-sge-docker")[0].binds.scratch.host)
    shutil.copy(FT1_3FHL, scratch / "farm-test-3fhl.fits.gz")
    (scratch / "farm-test-3fhl.fits.gz").chmod(0o644)
    work = Path(load_site("local-sge-docker")[0].workdir)
    before = set(work.iterdir())
    yield pwd.getpwnam(load_site("local-sge-docker")[0].submit_user)
    for d in set(work.iterdir()) - before:   # the jobs' folders of this module (outputs of MBs each)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def image(demo_build):
    r = demo_build["runtime"]
    return f"{r.repository}@{r.digest}"


def submit(site, image, tasks, *command, extra=()):
    r = CliRunner().invoke(main, ["farm", "submit", "--site", site, "--image", image, "--tasks", str(tasks),
                                  "--json", *extra, "--", *command])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def finished(site, job, tasks, timeout=600):
    return accounting.wait(load_site(site)[0], job["job_id"], tasks=tasks, timeout=timeout)


SELECT = ["evtselect", "infile=/scratch/farm-test-3fhl.fits.gz", "outfile=selected.fits", "emin=20000",
          "emax=300000", "zmax=90"]


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_array_job_outputs_belong_to_the_farm_user(farm, image, sched):
    site = f"local-{sched}-docker"
    job = submit(site, image, 4, *SELECT)
    rows = finished(site, job, 4)
    assert [(r.task, r.state, r.exit_code) for r in rows] == [(t, "done", 0) for t in (1, 2, 3, 4)]
    assert all(r.submit and r.start and r.end and r.start <= r.end for r in rows)
    d = Path(job["directory"])
    for t in (1, 2, 3, 4):
        out = d / f"task-{t}" / "selected.fits"
        assert out.stat().st_size > 0
        assert (out.stat().st_uid, out.stat().st_gid) == (farm.pw_uid, farm.pw_gid)
        assert "10775 selected" in (d / f"task-{t}.out").read_text()
    # the same selection in every task (headers differ only by their DATE)
    tables = [fits.getdata(d / f"task-{t}" / "selected.fits", 1) for t in (1, 2, 3, 4)]
    assert len(tables[0]) == 10775 and all((t == tables[0]).all() for t in tables[1:])


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_exit_codes_and_task_ids_collected(farm, image, sched):
    site = f"local-{sched}-docker"
    # each task exits with its own index minus one: the accounting must give 0, 1, 2 back per task
    job = submit(site, image, 3, "sh", "-c", 'echo "task=$RELMAN_TASK_ID site=$FARM_SITE"; exit $((RELMAN_TASK_ID - 1))')
    rows = finished(site, job, 3)
    assert [(r.task, r.exit_code) for r in rows] == [(1, 0), (2, 1), (3, 2)]
    assert [r.state for r in rows] == ["done", "failed", "failed"]
    d = Path(job["directory"])
    for t in (1, 2, 3):
        assert f"task={t} site={site}" in (d / f"task-{t}.out").read_text()
    r = CliRunner().invoke(main, ["farm", "status", job["job_id"], "--site", site, "--json"])
    assert r.exit_code == 1 and [t["exit_code"] for t in json.loads(r.output)["tasks"]] == [0, 1, 2]


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_runs_are_recorded_and_collected(farm, farm_db, image, sched):
    """Submit records the run (which image, by digest, ran which job where); collect stores each task's
    accounting, its start and end on the node and, for a failed task, the end of its log."""
    site = f"local-{sched}-docker"
    job = submit(site, image, 2, "sh", "-c", 'echo "task $RELMAN_TASK_ID says hello"; exit $((RELMAN_TASK_ID - 1))')
    d = detail(farm_db, job)
    assert (d["state"], d["scheduler"], d["runtime"], d["tasks"]) == ("submitted", sched, "docker", 2)
    assert d["image_digest"] == image.split("@")[1] and d["image_ref"] == image and d["submitted_by"]
    assert job["record"] == d["id"] and d["command"][:2] == ["sh", "-c"]
    finished(site, job, 2)
    r = CliRunner().invoke(main, ["farm", "collect", job["job_id"], "--site", site, "--json"])
    assert r.exit_code == 1, r.output                   # task 2 exited 1
    got = json.loads(r.stdout)
    assert (got["recorded"], got["state"]) == (d["id"], "failed")
    t1, t2 = got["tasks"]
    assert (t1["state"], t1["exit_code"], t2["state"], t2["exit_code"]) == ("done", 0, "failed", 1)
    for t in (t1, t2):
        assert t["host"] and t["node_start"] <= t["node_end"] and 0 <= t["queue_seconds"] < 600
        assert 0 < t["run_seconds"] < 600
    assert "task 2 says hello" in t2["detail"] and "task 1" not in t2["detail"]
    stored = detail(farm_db, job)
    assert stored["state"] == "failed" and [(t["task"], t["state"], t["exit_code"]) for t in stored["task_rows"]] == \
        [(1, "done", 0), (2, "failed", 1)]
    assert "task 2 says hello" in stored["task_rows"][1]["detail"] and stored["task_rows"][0]["run_seconds"] > 0
    r = CliRunner().invoke(main, ["farm", "show", job["job_id"], "--site", site])
    assert r.exit_code == 0 and image.split("@")[1] in r.output and "task    2: failed" in r.output, r.output
    assert job["job_id"] in [x["job_id"] for x in runs_of(farm_db, image=image.split("@")[1], site=site)]


def test_hostile_arguments_reach_the_program_verbatim(farm, image):
    hostile = ["a b; touch /tmp/farm-pwned", "$(touch /tmp/farm-pwned)", "`id`", "' \" \\", "*"]
    job = submit("local-sge-docker", image, 1, "printf", "[%s]\\n", *hostile)
    rows = finished("local-sge-docker", job, 1)
    assert rows[0].exit_code == 0
    log = (Path(job["directory"]) / "task-1.out").read_text().splitlines()
    assert log == [f"[{h}]" for h in hostile]
    assert not Path("/tmp/farm-pwned").exists()


def test_credentials_reach_the_job_and_nothing_else(farm, image):
    site = load_site("local-slurm-docker")[0]
    secret_file = Path(site.calibration_db.credentials_file)
    secret = secret_file.read_bytes()
    job = submit("local-slurm-docker", image, 1, "sh", "-c",
                 'sha256sum < "$RELMAN_CALIBDB_CREDENTIALS"; echo "host=$RELMAN_CALIBDB_HOST"; '
                 'echo x 2>/dev/null >> "$RELMAN_CALIBDB_CREDENTIALS" || echo read-only')
    assert finished("local-slurm-docker", job, 1)[0].exit_code == 0
    d = Path(job["directory"])
    log = (d / "task-1.out").read_text()
    assert hashlib.sha256(secret).hexdigest() in log and "host=127.0.0.1:3306" in log and "read-only" in log
    assert secret_file.read_bytes() == secret
    password = [ln for ln in secret.decode().splitlines() if ln.startswith("password=")][0]
    for f in d.rglob("*"):
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f


def _containers(job_id):
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    return [n for n in out.stdout.split() if n.startswith(f"relman-{job_id}-")]


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_cancelled_job_leaves_no_container(farm, image, sched):
    site = f"local-{sched}-docker"
    job = submit(site, image, 1, "sleep", "600")
    deadline = time.monotonic() + 120
    while not _containers(job["job_id"]):
        assert time.monotonic() < deadline, "the task's container never started"
        time.sleep(0.3)
    subprocess.run(["qdel", job["job_id"]] if sched == "sge" else ["scancel", job["job_id"]], check=True,
                   capture_output=True)
    rows = finished(site, job, 1, timeout=60)
    # Slurm records CANCELLED (its exit code says nothing then); Grid Engine the trap's exit 143
    assert rows[0].state == "cancelled" if sched == "slurm" else (rows[0].state, rows[0].exit_code) == ("failed", 143)
    deadline = time.monotonic() + 30
    while _containers(job["job_id"]):
        assert time.monotonic() < deadline, f"container left running after cancel: {_containers(job['job_id'])}"
        time.sleep(0.3)


def test_scheduler_refusal_is_a_clear_error(farm, image, tmp_path):
    src = (Path(load_site("local-sge-docker")[1])).read_text().replace("queue: relman.q", "queue: no-such.q")
    bad = tmp_path / "bad-queue.yaml"
    bad.write_text(src)
    before = set(Path(load_site("local-sge-docker")[0].workdir).iterdir())
    r = CliRunner().invoke(main, ["farm", "submit", "--site", str(bad), "--image", image, "--", "true"])
    assert r.exit_code == 1 and "qsub refused the job" in r.output, r.output
    assert set(Path(load_site("local-sge-docker")[0].workdir).iterdir()) == before   # nothing left behind
    # an image or a SIF the registry does not have: refused at submit, nothing written
    for args, what in ((["--site", "local-sge-docker", "--image", "127.0.0.1:5000/farm-12b/absent:nope"], "--image"),
                       (["--site", "local-slurm-apptainer", "--image", image, "--sif", f"{SIF_REPO}:absent-sif"], "--sif")):
        r = CliRunner().invoke(main, ["farm", "submit", *args, "--", "true"])
        assert r.exit_code == 2 and f"{what} " in r.output and "not in registry" in r.output, r.output
    assert set(Path(load_site("local-sge-docker")[0].workdir).iterdir()) == before
    with pytest.raises(NotFound, match="knows no job"):
        accounting.status(load_site("local-slurm-docker")[0], "999999")


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_scheduler_down_is_a_clear_error_and_nothing_is_recorded(farm, farm_db, image, sched, monkeypatch):
    """The client cannot reach its master/controller (pointed at a port where nothing listens, as when the
    daemon is down): exit 1 naming the scheduler, no job folder left, nothing recorded."""
    import re
    import tempfile
    site = f"local-{sched}-docker"
    if sched == "sge":
        monkeypatch.setenv("SGE_QMASTER_PORT", "1")
    else:
        conf = Path(tempfile.mkstemp(prefix="relman-slurm-down-", suffix=".conf", dir="/tmp")[1])
        conf.write_text(re.sub(r"^(SlurmctldHost=.*)$", r"\1\nSlurmctldPort=1", Path("/etc/slurm/slurm.conf").read_text(),
                               flags=re.M))
        conf.chmod(0o644)                        # read by the farm user's sbatch
        monkeypatch.setenv("SLURM_CONF", str(conf))
    work = Path(load_site(site)[0].workdir)
    before_dirs, before_runs = set(work.iterdir()), runs_of(farm_db)
    try:
        r = CliRunner().invoke(main, ["farm", "submit", "--site", site, "--image", image, "--", "true"])
    finally:
        if sched == "slurm":
            conf.unlink()
    tool = "qsub" if sched == "sge" else "sbatch"
    assert r.exit_code == 1 and f"{tool} refused the job" in r.output and "is the scheduler up?" in r.output, r.output
    assert ("qmaster" in r.output) if sched == "sge" else ("Unable to contact slurm controller" in r.output)
    assert set(work.iterdir()) == before_dirs and runs_of(farm_db) == before_runs


def test_image_missing_from_the_registry_fails_every_task(farm, farm_db, image, host_reference, settings):
    """A scale test's image vanishes (gc, a registry wipe) between the baseline and the tasks' start: every
    task fails, with the engine's reason in its row; the run and its tasks are recorded failed, none passed."""
    import secrets
    import threading
    from release_manager.farm.scale_test import run_scale_test
    from release_manager.registry import Registry
    from release_manager.spec import load_specs
    site = load_site("local-sge-docker")[0]
    # the demo image plus a label: a digest of its own, pushed to a repository of this test
    repo = "farm-12/vanishing"
    tag = f"127.0.0.1:5000/{repo}:{secrets.token_hex(4)}"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=f"FROM {image}\nLABEL relman.test={tag}\n",
                   text=True, check=True, capture_output=True)
    subprocess.run(["docker", "push", "-q", tag], check=True, capture_output=True)
    reg = Registry("127.0.0.1:5000", None, insecure=True)
    digest = reg.manifest_digest(repo, tag.rsplit(":", 1)[1])
    vanishing = f"127.0.0.1:5000/{repo}@{digest}"
    # both slots busy: the scale test's tasks wait in the queue while the image disappears
    blockers = submit("local-sge-docker", image, 2, "sleep", "300", extra=["--no-record"])
    deadline = time.monotonic() + 120
    while sum(r.state == "running" for r in accounting.status(site, blockers["job_id"])) < 2:
        assert time.monotonic() < deadline, "the blockers never ran"
        time.sleep(0.5)
    out = {}
    t = threading.Thread(target=lambda: out.update(rep=run_scale_test(
        load_settings_for_thread(settings), load_specs(PROJECT_ROOT / "image_specs"), site, vanishing, 2,
        package="evtselect", timeout=300)))
    t.start()
    try:
        deadline = time.monotonic() + 300
        while not runs_of(farm_db, image=digest):          # recorded: submitted, waiting behind the blockers
            assert t.is_alive() and time.monotonic() < deadline, f"the scale test did not submit: {out}"
            time.sleep(0.3)
        assert reg.delete_manifest(repo, digest)
        image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True,
                                  text=True, check=True).stdout.strip()
        subprocess.run(["docker", "image", "rm", "-f", image_id], check=True, capture_output=True)
    finally:
        subprocess.run(["qdel", blockers["job_id"]], capture_output=True)
        t.join(timeout=400)
    rep = out["rep"]
    assert rep.verdict == "fail" and rep.summary["passed"] == 0 and rep.summary["failed"] == 2
    for row in rep.task_rows:
        assert row["verdict"] == "error" and row["state"] == "failed" and row["exit_code"] == 125, row
        assert "manifest unknown" in row["detail"] or "not found" in row["detail"], row["detail"]
    d = detail(farm_db, {"job_id": rep.job_id, "site": site.name})
    assert d["state"] == "failed" and d["kind"] == "scale-test" and d["summary"]["passed"] == 0
    assert [(t["verdict"], t["state"]) for t in d["task_rows"]] == [("error", "failed")] * 2
    assert all("manifest unknown" in t["detail"] or "not found" in t["detail"] for t in d["task_rows"])


def load_settings_for_thread(settings):
    """The session's settings with this module's database (the thread does not go through the command line)."""
    from release_manager.config import load_settings
    import os
    return load_settings(data_dir=settings.data_dir, db_url=os.environ["RELMAN_DB_URL"])


# ---------------------------------------------------------------- scale test

def test_scale_test_grid_engine_docker(farm, farm_db, image, host_reference, tmp_path):
    """2 tasks of the demo's verification workload: every output equal to the reference; the report (JSON,
    self-contained HTML with plots) and the database agree."""
    report = tmp_path / "report"
    r = CliRunner().invoke(main, ["farm", "scale-test", "--site", "local-sge-docker", "--image", image, "--tasks", "2",
                                  "--report", str(report), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert (rep["package"], rep["verdict"], rep["tasks"]) == ("evtselect", "pass", 2)
    s = rep["summary"]
    assert (s["passed"], s["failed"], s["differ"], s["accounted"]) == (2, 0, 0, 2)
    assert rep["baseline"]["verdict"] == "pass" and 0 < rep["baseline"]["program_seconds"] < 60
    assert rep["baseline"]["docker_run_seconds"] >= rep["baseline"]["program_seconds"]
    for t in rep["task_rows"]:
        assert t["verdict"] == "pass" and t["checks"] > 0 and t["queue_seconds"] >= 0
        assert t["run_seconds"] > 0 and t["overhead_seconds"] == pytest.approx(t["run_seconds"] - s["program_seconds"],
                                                                               abs=0.01)
    assert s["wall_seconds"] > 0 and s["tasks_per_second"] > 0 and s["run_seconds"]["n"] == 2
    assert rep["registry"]["image_compressed_bytes"] > 0
    assert rep["command"][0] == "evtselect" and "outfile=./selected.fits" in rep["command"]
    html = (report / "scale-test.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "PASS" in html and 'src="http' not in html
    assert json.loads((report / "scale-test.json").read_text())["job_id"] == rep["job_id"]
    d = detail(farm_db, {"job_id": rep["job_id"], "site": "local-sge-docker"})
    assert (d["kind"], d["state"], d["package"]) == ("scale-test", "passed", "evtselect")
    assert [t["verdict"] for t in d["task_rows"]] == ["pass", "pass"] and d["summary"]["passed"] == 2


# ---------------------------------------------------------------- Apptainer

def _tool_image_present():
    return subprocess.run(["docker", "image", "inspect", TOOL_IMAGE], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def sif(demo_build, tmp_path_factory):
    """The demo runtime image as a SIF, built by Apptainer in its tool image and pushed as an ORAS artifact."""
    if not _tool_image_present():
        pytest.skip(f"{TOOL_IMAGE} absent (scripts/farm/apptainer-image makes it; CI does)")
    r = demo_build["runtime"]
    d = tmp_path_factory.mktemp("sif")
    ref = f"{SIF_REPO}:{r.digest.split(':')[1][:12]}-sif"
    script = (f"APPTAINER_NOHTTPS=1 apptainer build -F {d}/x.sif docker://{r.repository}@{r.digest} && "
              f"apptainer push {d}/x.sif oras://{ref}")
    subprocess.run(["docker", "run", "--rm", "--network", "host", "--security-opt", "seccomp=unconfined",
                    "--security-opt", "systempaths=unconfined", "--device", "/dev/fuse", "-v", f"{d}:{d}",
                    TOOL_IMAGE, "sh", "-c", script], check=True, capture_output=True, timeout=900)
    return ref


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_apptainer_array_job(farm, image, sif, sched):
    site = f"local-{sched}-apptainer"
    job = submit(site, image, 2, *SELECT, extra=["--sif", sif])
    rows = finished(site, job, 2)
    d = Path(job["directory"])
    assert [(r.state, r.exit_code) for r in rows] == [("done", 0)] * 2, [(d / f"task-{t}.out").read_text() for t in (1, 2)]
    for t in (1, 2):
        out = d / f"task-{t}" / "selected.fits"
        assert out.stat().st_uid == farm.pw_uid and out.stat().st_size > 0
        assert "10775 selected" in (d / f"task-{t}.out").read_text()
    cache = Path(load_site(site)[0].apptainer.sif_cache)
    assert any(p.suffix == ".sif" and p.stat().st_uid == farm.pw_uid for p in cache.iterdir())


def test_scale_test_fails_when_outputs_differ(farm, farm_db, image, host_reference, tmp_path):
    """An image whose evtselect selects from 30 GeV instead of 20 (a wrapper appends emin=30000: the last
    value wins): every task runs to exit 0 but its output differs from the reference: exit 1, each task
    `fail` with the comparator's reason, the run recorded failed."""
    import secrets
    tag = f"127.0.0.1:5000/farm-12/differs:{secrets.token_hex(4)}"
    dockerfile = (f"FROM {image}\nUSER root\n"
                  "RUN mv /opt/evtselect/bin/evtselect /opt/evtselect/bin/evtselect.real && "
                  "printf '#!/bin/sh\\nexec /opt/evtselect/bin/evtselect.real \"$@\" emin=30000\\n' "
                  "> /opt/evtselect/bin/evtselect && chmod 755 /opt/evtselect/bin/evtselect\nUSER sas\n")
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True, capture_output=True)
    try:
        subprocess.run(["docker", "push", "-q", tag], check=True, capture_output=True)
        r = CliRunner().invoke(main, ["farm", "scale-test", "--site", "local-slurm-docker", "--image", tag, "--tasks",
                                      "2", "--package", "evtselect", "--report", str(tmp_path / "report")])
        assert r.exit_code == 1, r.output
        assert "FAIL" in r.stdout and "0 equal to the reference, 2 differ, 0 failed" in r.stdout, r.stdout
        rep = json.loads((tmp_path / "report" / "scale-test.json").read_text())
        assert rep["baseline"]["verdict"] == "fail"          # the image itself differs from the reference
        for t in rep["task_rows"]:
            assert (t["state"], t["exit_code"], t["verdict"]) == ("done", 0, "fail")
            assert t["detail"].startswith("differs from the reference: selected.fits")
        d = detail(farm_db, {"job_id": rep["job_id"], "site": "local-slurm-docker"})
        assert d["state"] == "failed" and [t["verdict"] for t in d["task_rows"]] == ["fail", "fail"]
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
        from release_manager.registry import Registry
        reg = Registry("127.0.0.1:5000", None, insecure=True)
        pushed = reg.manifest_digest("farm-12/differs", tag.rsplit(":", 1)[1])
        if pushed:
            reg.delete_manifest("farm-12/differs", pushed)


def test_scale_test_slurm_apptainer(farm, farm_db, image, sif, host_reference, tmp_path):
    r = CliRunner().invoke(main, ["farm", "scale-test", "--site", "local-slurm-apptainer", "--image", image, "--sif", sif,
                                  "--tasks", "2", "--report", str(tmp_path / "report"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["verdict"] == "pass" and rep["summary"]["passed"] == 2 and rep["sif"].split("@")[1].startswith("sha256:")
    assert rep["registry"]["sif_bytes"] > 0
    d = detail(farm_db, {"job_id": rep["job_id"], "site": "local-slurm-apptainer"})
    assert d["sif_digest"] == rep["sif"].split("@")[1] and d["state"] == "passed"
