"""Farm runs in the release database on SQLite, MariaDB and PostgreSQL: a submission recorded with its
image and SIF digests (linked to the image and SIF rows the database knows), task rows stored and updated
as the accounting is read, and the answers of `relman farm runs` / `farm show` / `images show`."""
from __future__ import annotations

import json

import pytest

from test_db_helpers import cli, db, empty_url, result, sha  # noqa: F401 - fixtures

from release_manager.db import record_build, record_sif
from release_manager.db.farm import farm_run_detail, list_farm_runs, record_farm_run, record_farm_tasks, run_state
from release_manager.errors import NotFound, UsageError

pytestmark = pytest.mark.random_order(disabled=True)     # one database per backend, shared in file order

IMAGE = sha("evtselect-runtime-0-digest")     # result(n=0)'s digest
SIF = sha("the-sif-artifact")


def _submit(db, job_id="1234", site="local-sge-docker", image=IMAGE, **kw):
    args = dict(site=site, scheduler="sge", runtime="docker", job_id=job_id, job_name=f"relman-x-{job_id}",
                image_ref="127.0.0.1:5000/fermi-lat/evtselect:v1.0.0-runtime", image_digest=image, tasks=3,
                command=["evtselect", "infile=/scratch/x"], directory=f"/var/lib/relman-farm/work/relman-x-{job_id}",
                actor="alice", db=db)
    args.update(kw)
    return record_farm_run(**args)


def test_a_run_is_linked_to_the_image_and_sif_the_database_knows(db):
    img = record_build(result(n=0), db=db).image
    sif_row = record_sif("evtselect", image_digest=IMAGE, source="docker://x", sha256=sha("file"), size=10,
                         apptainer_version="1.3", registry_ref="oras://127.0.0.1:5000/fermi-lat/evtselect:v-sif",
                         registry_digest=SIF, db=db)
    run = _submit(db, site="local-slurm-apptainer", scheduler="slurm", runtime="apptainer", sif_digest=SIF,
                  sif_ref="127.0.0.1:5000/fermi-lat/evtselect:v-sif")
    with db.read() as s:
        d = farm_run_detail(s, "1234", "local-slurm-apptainer")
    assert d["id"] == run and d["image_row"] == img and d["sif_row"] == sif_row and d["package"] == "evtselect"
    assert (d["state"], d["submitted_by"], d["tasks"], d["task_rows"]) == ("submitted", "alice", 3, [])
    assert d["image"]["tags"][0] == "v1.0.0-runtime"


def test_an_image_the_database_does_not_know_is_still_recorded(db):
    run = _submit(db, job_id="77", image=sha("unknown-image"))
    with db.read() as s:
        d = farm_run_detail(s, "77")
    assert d["id"] == run and d["image_row"] is None and d["package"] is None
    assert d["image_digest"] == sha("unknown-image")


def test_task_rows_follow_the_accounting(db):
    run = _submit(db, job_id="500")
    rows = [{"task": 1, "state": "done", "exit_code": 0, "submit": "2026-12-01T05:00:00Z",
             "start": "2026-12-01T05:00:02Z", "end": "2026-12-01T05:00:09Z", "host": "vm", "queue_seconds": 2.1,
             "run_seconds": 6.9},
            {"task": 2, "state": "running", "start": "2026-12-01T05:00:03Z"}]
    assert record_farm_tasks(run, rows, actor="alice", db=db) == "submitted"        # task 3 not seen yet
    rows = [{"task": 2, "state": "failed", "exit_code": 2, "end": "2026-12-01T05:00:12Z",
             "detail": "failed=0\nevtselect: no such file"},
            {"task": 3, "state": "done", "exit_code": 0}]
    assert record_farm_tasks(run, rows, actor="alice", db=db) == "failed"
    with db.read() as s:
        d = farm_run_detail(s, "500", "local-sge-docker")
    t = {r["task"]: r for r in d["task_rows"]}
    assert [r["task"] for r in d["task_rows"]] == [1, 2, 3]
    assert (t[1]["state"], t[1]["exit_code"], t[1]["start"], t[1]["host"], t[1]["queue_seconds"]) == \
        ("done", 0, "2026-12-01T05:00:02Z", "vm", 2.1)
    # an update keeps what the earlier read gave (the start) and adds the end and the failure
    assert (t[2]["state"], t[2]["exit_code"], t[2]["start"], t[2]["end"]) == \
        ("failed", 2, "2026-12-01T05:00:03Z", "2026-12-01T05:00:12Z")
    assert "no such file" in t[2]["detail"] and d["state"] == "failed" and d["collected_at"]
    # a scale test sets its own verdict and summary
    assert record_farm_tasks(run, [{"task": 1, "verdict": "pass"}], state="failed",
                             summary={"passed": 1, "tasks": 3}, db=db) == "failed"
    with db.read() as s:
        assert farm_run_detail(s, "500")["summary"] == {"passed": 1, "tasks": 3}


def test_listing_by_image_site_and_package(db):
    with db.read() as s:
        all_runs = list_farm_runs(s)
        assert [r["job_id"] for r in all_runs] == ["500", "77", "1234"]          # newest first
        assert [r["job_id"] for r in list_farm_runs(s, image=IMAGE)] == ["500", "1234"]
        assert [r["job_id"] for r in list_farm_runs(s, image=IMAGE[7:19])] == ["500", "1234"]
        assert [r["job_id"] for r in list_farm_runs(s, image=f"127.0.0.1:5000/x@{SIF}")] == ["1234"]   # by its SIF
        assert [r["job_id"] for r in list_farm_runs(s, image="evtselect:v1.0.0-runtime")] == ["500", "77", "1234"]
        assert [r["job_id"] for r in list_farm_runs(s, site="local-slurm-apptainer")] == ["1234"]
        assert [r["job_id"] for r in list_farm_runs(s, package="evtselect")] == ["500", "1234"]
        assert list_farm_runs(s, image=sha("never-ran")) == []
        with pytest.raises(NotFound, match="no farm run with job id 9"):
            farm_run_detail(s, "9")


def test_the_same_job_id_at_two_sites_needs_the_site(db):
    _submit(db, job_id="1234", site="local-sge-docker")
    with db.read() as s:
        with pytest.raises(UsageError, match="several sites.*give --site"):
            farm_run_detail(s, "1234")
        assert farm_run_detail(s, "1234", "local-sge-docker")["site"] == "local-sge-docker"


def test_bad_records_are_refused(db):
    with pytest.raises(UsageError, match="image_digest"):
        _submit(db, image="sha256:short")
    with pytest.raises(UsageError, match="job id"):
        _submit(db, job_id="12;rm")
    with pytest.raises(NotFound):
        record_farm_tasks(999999, [], db=db)


def test_run_state():
    assert run_state(["done", "done"], 3) == "submitted"
    assert run_state(["done", "running", "done"], 3) == "submitted"
    assert run_state(["done", "done", "done"], 3) == "done"
    assert run_state(["done", "cancelled", "done"], 3) == "failed"


def test_cli_runs_show_and_images_show(cli):
    r = cli("farm", "runs", "--image", IMAGE, "--json")
    assert r.exit_code == 0, r.output
    assert [x["job_id"] for x in json.loads(r.output)] == ["1234", "500", "1234"]
    r = cli("farm", "runs")
    assert r.exit_code == 0 and "local-slurm-apptainer" in r.output and IMAGE[:19] in r.output
    r = cli("farm", "show", "1234", "--site", "local-slurm-apptainer")
    assert r.exit_code == 0, r.output
    assert IMAGE in r.output and SIF in r.output and "submitted: " in r.output and "by alice" in r.output
    r = cli("farm", "show", "500", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["state"] == "failed"
    r = cli("farm", "show", "4242")
    assert r.exit_code == 1 and "no farm run with job id 4242" in r.output
    r = cli("farm", "show", "12x")
    assert r.exit_code == 2 and "not a scheduler job number" in r.output
    r = cli("images", "show", IMAGE, "--json")
    assert r.exit_code == 0, r.output
    assert sorted(x["job_id"] for x in json.loads(r.output)["farm_runs"]) == ["1234", "1234", "500"]
    r = cli("images", "show", IMAGE)
    assert r.exit_code == 0 and "farm job 500 at local-sge-docker" in r.output
