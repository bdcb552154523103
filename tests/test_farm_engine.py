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

pytestmark = pytest.mark.engine
SCHEDULERS = ["sge", "slurm"]
TOOL_IMAGE = "relman/apptainer:sid"
SIF_REPO = "127.0.0.1:5000/farm-12b/evtselect"   # this module's own repository for the SIF it pushes


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
