"""Site files and the job scripts rendered from them (no scheduler, no engine): every shipped site
loads; bad site files fail with file, field, value and what is allowed; every site's job script equals
its golden fixture and is valid bash; hostile arguments stay data.

After an intended change, regenerate and review the diff:
    RELMAN_REGENERATE_GOLDEN=1 python -m pytest tests/test_farm_sites.py
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from release_manager.cli import main
from release_manager.errors import SpecError, UsageError
from release_manager.farm import launcher
from release_manager.farm.site import load_site, site_names

GOLDEN = Path(__file__).parent / "golden" / "farm"
REGENERATE = os.environ.get("RELMAN_REGENERATE_GOLDEN") == "1"
DIGEST = "sha256:" + "ab" * 32
SIF_DIGEST = "sha256:" + "cd" * 32
IMAGE = launcher.ImageRef("127.0.0.1:5000", "fermi-lat/evtselect", "v1.1.0-runtime", DIGEST)
SIF = launcher.ImageRef("127.0.0.1:5000", "fermi-lat/evtselect", "v1.1.0-runtime-sif", SIF_DIGEST)
COMMAND = ["evtselect", "infile=/scratch/ft1.fits.gz", "outfile=selected.fits", "emin=20000"]
LOCAL = ["local-sge-docker", "local-sge-apptainer", "local-slurm-apptainer", "local-slurm-docker"]
FARMS = ["slac-lsf-docker", "s3df-slurm-apptainer", "ccin2p3-uge-apptainer"]


def _job(name, command=COMMAND, tasks=4):
    site, _ = load_site(name)
    job = launcher.prepare(site, IMAGE, command, tasks, sif=SIF if site.runtime == "apptainer" else None,
                           name="relman-20261201T000000-000000", workdir=Path("/farm/work"))
    if site.runtime == "apptainer":   # runs.submit reads it from the image's config in the registry
        job.entrypoint = ["/usr/local/bin/relman-entrypoint"]
    return job


def test_shipped_sites():
    assert set(LOCAL + FARMS) <= set(site_names())
    combos = {(load_site(n)[0].scheduler, load_site(n)[0].runtime) for n in site_names()}
    assert {("lsf", "docker"), ("slurm", "apptainer"), ("sge", "apptainer"), ("sge", "docker")} <= combos
    for n in LOCAL:
        assert load_site(n)[0].placeholders() == [], n
    for n in FARMS:
        ph = dict(load_site(n)[0].placeholders())
        # what cannot be known here is a visible placeholder: the queue and the calibration database at least
        assert "queue" in ph and "calibration_db.host" in ph and "calibration_db.credentials_file" in ph, n


@pytest.mark.parametrize("name", sorted(site_names()))
def test_job_script_matches_golden(name):
    text = launcher.render(_job(name))
    golden = GOLDEN / f"{name}.sh"
    if REGENERATE:
        golden.write_text(text)
    assert golden.exists(), f"no golden fixture {golden}; regenerate with RELMAN_REGENERATE_GOLDEN=1"
    assert text == golden.read_text(), f"{name}: job script differs from {golden}"
    subprocess.run(["bash", "-n", str(golden)], check=True)


def test_scripts_say_what_each_scheduler_and_runtime_needs():
    sge = launcher.render(_job("local-sge-docker"))
    assert "#$ -notify" in sge and "#$ -t 1-4" in sge and "trap stop_container USR2 TERM" in sge
    assert f"127.0.0.1:5000/fermi-lat/evtselect@{DIGEST}" in sge and ":v1.1.0-runtime " not in sge
    assert '--user "$(id -u):$(id -g)"' in sge and "--init" in sge
    slurm = launcher.render(_job("local-slurm-docker"))
    assert "#SBATCH --array=1-4" in slurm and "SLURM_ARRAY_TASK_ID" in slurm and "--init" in slurm
    lsf = launcher.render(_job("slac-lsf-docker"))
    assert '#BSUB -J "relman-20261201T000000-000000[1-4]"' in lsf and "LSB_JOBINDEX" in lsf
    app = launcher.render(_job("s3df-slurm-apptainer"))
    assert "exec --containall" in app and f"oras://127.0.0.1:5000/fermi-lat/evtselect@{SIF_DIGEST}" in app
    # the image's entrypoint, then the command, each word quoted: no shell evaluates them again
    assert "\"$sif\" \\\n    /usr/local/bin/relman-entrypoint evtselect infile=/scratch/ft1.fits.gz" in app
    assert "flock 9" in app and "docker" not in app   # a real farm's Apptainer: no tool container


def test_credentials_file_is_bound_never_read(tmp_path):
    site, _ = load_site("local-sge-docker")
    text = launcher.render(_job("local-sge-docker"))
    cred = site.calibration_db.credentials_file
    assert f"-v {cred}:/run/relman/calibdb-credentials:ro" in text
    assert "RELMAN_CALIBDB_CREDENTIALS=/run/relman/calibdb-credentials" in text
    assert f"cat {cred}" not in text and "password" not in text


def test_hostile_arguments_stay_data(tmp_path):
    """The rendered command line, evaluated by bash, gives back exactly the words given."""
    hostile = ["a b; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "' \" \\", "*", "--x=$HOME"]
    text = launcher.render(_job("local-sge-docker", ["printf", "%s\\n", *hostile]))
    # the container's command: the line after the image (the script's last word list before `&`)
    line = [ln for ln in text.splitlines() if ln.strip().startswith("printf")][0].rstrip(" &")
    out = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == hostile
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("program", ["ls;id", "a b", "$(id)", "", "x\ny"])
def test_bad_program_refused(program):
    with pytest.raises(UsageError, match="program"):
        launcher.validate_command(program, [])


def test_argument_with_newline_refused():
    with pytest.raises(UsageError, match="line break"):
        launcher.validate_command("echo", ["a\nb"])


@pytest.mark.parametrize("edit,field,words", [
    (("scheduler: sge", "scheduler: pbs"), "scheduler", ["'pbs'", "sge", "slurm", "lsf"]),
    (("runtime: docker", "runtime: podman"), "runtime", ["'podman'", "docker", "apptainer"]),
    (("queue: relman.q", "queue: relman.q;rm"), "queue", ["relman.q;rm", "queue or partition name"]),
    (("workdir: /var/lib/relman-farm/work", "workdir: relative/dir"), "workdir", ["relative/dir", "absolute path"]),
    (("limits: {", "limits: {cores: 2, "), "limits.cores", ["unknown key", "cpus", "memory", "walltime"]),
    (("walltime: \"00:30:00\"", "walltime: 30m"), "limits.walltime", ["30m", "HH:MM:SS"]),
    (("memory: 2GiB", "memory: lots"), "limits.memory", ["lots", "GiB"]),
    (("FARM_SITE:", "RELMAN_X:"), "environment", ["RELMAN_X"]),
    (("host: 127.0.0.1:3306", "host: 'db; rm'"), "calibration_db.host", ["db; rm", "host name"]),
])
def test_bad_site_file(tmp_path, edit, field, words):
    src = (Path(launcher.__file__).parent / "sites" / "local-sge-docker.yaml").read_text()
    assert edit[0] in src
    bad = tmp_path / "bad-site.yaml"
    bad.write_text(src.replace(edit[0], edit[1], 1))
    with pytest.raises(SpecError) as err:
        load_site(str(bad))
    msg = str(err.value)
    assert str(bad) in msg and f": {field}" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_apptainer_site_needs_its_section(tmp_path):
    src = (Path(launcher.__file__).parent / "sites" / "local-sge-apptainer.yaml").read_text()
    bad = tmp_path / "s.yaml"
    bad.write_text(src.split("apptainer:\n")[0])
    with pytest.raises(SpecError, match="apptainer"):
        load_site(str(bad))


def test_cli_refusals_exit_2(tmp_path):
    runner = CliRunner()
    cases = [
        (["--site", "no-such-site", "--image", "127.0.0.1:5000/a/b:t", "--", "true"], "no site named 'no-such-site'"),
        (["--site", "slac-lsf-docker", "--image", "127.0.0.1:5000/a/b:t", "--", "true"], "placeholder"),
        (["--site", "local-sge-docker", "--image", "not a ref", "--", "true"], "not an image reference"),
        (["--site", "local-sge-docker", "--image", "127.0.0.1:5000/a/b:t", "--", "rm;id"], "program"),
    ]
    for args, words in cases:
        r = runner.invoke(main, ["farm", "submit", *args])
        assert r.exit_code == 2, (args, r.output)
        assert words in r.output, (args, r.output)
    with pytest.raises(UsageError, match="--tasks"):
        launcher.prepare(load_site("local-sge-docker")[0], IMAGE, COMMAND, 0)
    with pytest.raises(UsageError, match="--workdir"):
        launcher.prepare(load_site("local-sge-docker")[0], IMAGE, COMMAND, 1, workdir=Path("/a b"))


def test_default_sif_reference():
    assert launcher.default_sif_ref("127.0.0.1:5000/fermi-lat/evtselect:v1.1.0-runtime") == \
        "127.0.0.1:5000/fermi-lat/evtselect:v1.1.0-runtime-sif"
    with pytest.raises(UsageError, match="--sif"):
        launcher.default_sif_ref("127.0.0.1:5000/fermi-lat/evtselect@" + DIGEST)


def test_sites_and_templates_ship_in_the_wheel():
    """setup.cfg's package data covers every shipped site file and job template (`--site NAME` must work
    from an installed relman, not only from a checkout)."""
    import configparser
    import fnmatch

    from release_manager.config import PROJECT_ROOT
    cfg = configparser.ConfigParser()
    cfg.read(PROJECT_ROOT / "setup.cfg")
    data = {k: [p.strip() for p in v.split(",")] for k, v in cfg["options.package_data"].items()}
    pkg = PROJECT_ROOT / "release_manager"
    for path, package in [(p, "release_manager.farm") for p in (pkg / "farm" / "sites").glob("*.yaml")] + \
                         [(p, "release_manager") for p in (pkg / "templates" / "farm").glob("*.j2")]:
        base = PROJECT_ROOT.joinpath(*package.split("."))
        rel = str(path.relative_to(base))
        assert any(fnmatch.fnmatch(rel, pat) for pat in data.get(package, [])), (package, rel)


def test_lsf_bjobs_parsed_per_task(monkeypatch):
    """LSF is not installed here: `bjobs -a -json -o "<accounting.BJOBS_FIELDS>" JOBID` as LSF 10.1 documents it
    (a sample written after IBM's manual, not captured from a farm) gives one row per array element."""
    import json
    import time
    from release_manager.farm import accounting
    monkeypatch.setenv("TZ", "America/Los_Angeles")      # SLAC's local time: bjobs prints it
    time.tzset()
    try:
        rows = accounting.parse_bjobs((GOLDEN / "lsf-bjobs.json").read_text(), "4012")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    got = [rows[k].as_dict() for k in sorted(rows)]
    golden = GOLDEN / "lsf-bjobs.rows.json"
    if REGENERATE:
        golden.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(golden.read_text())
    assert [(r["task"], r["state"], r["exit_code"]) for r in got] == [
        (1, "done", 0), (2, "failed", 2), (3, "cancelled", 130), (4, "running", None), (5, "pending", None)]
    assert got[0]["end"] == "2026-12-01T08:04:00Z" and got[3]["host"] == "rhel6-64g11"
    assert accounting.parse_bjobs('{"COMMAND":"bjobs","JOBS":0,"RECORDS":[{"JOBID":"9","ERROR":"Job <9> is not found"}]}',
                                  "9") == {}
    with pytest.raises(accounting.SchedulerError, match="did not print JSON"):
        accounting.parse_bjobs("bjobs: not found", "9")


def test_lsf_bjobs_times_without_a_year():
    import datetime as dt
    from release_manager.farm.accounting import _lsf_time
    jan = dt.datetime(2027, 1, 2, 12, 0)
    # a December time read in January is last year's, not eleven months ahead
    assert _lsf_time("Dec 31 23:00 E", jan)[:4] == "2026"
    assert _lsf_time("Jan  2 11:00", jan)[:4] == "2027"
    assert _lsf_time("-", jan) is None and _lsf_time("", jan) is None


def test_scale_test_refusals_exit_2():
    runner = CliRunner()
    cases = [
        (["--site", "local-sge-docker", "--image", "127.0.0.1:5000/a/nopkg:t", "--tasks", "1"], "no spec for package 'nopkg'"),
        (["--site", "local-sge-docker", "--image", "127.0.0.1:5000/fermi-lat/evtselect:t", "--tasks", "0"], "--tasks 0"),
        (["--site", "slac-lsf-docker", "--image", "127.0.0.1:5000/fermi-lat/evtselect:t", "--tasks", "2"], "placeholder"),
        (["--site", "local-sge-docker", "--image", "127.0.0.1:5000/fermi-lat/fastcopy:t", "--tasks", "2"],
         "no verification section"),
    ]
    for args, words in cases:
        r = runner.invoke(main, ["farm", "scale-test", *args])
        assert r.exit_code == 2, (args, r.output)
        assert words in r.output, (args, r.output)


def test_scale_test_command_maps_the_workload_to_the_task_folder():
    from types import SimpleNamespace
    from release_manager.farm.scale_test import task_command
    staged = {"ft1": Path("/scratch/relman-inputs/0123/ft1")}
    one = [SimpleNamespace(command=["evtselect", "infile=/inputs/ft1", "outfile=/outputs/selected.fits"])]
    assert task_command(one, staged) == ["evtselect", "infile=/scratch/relman-inputs/0123/ft1", "outfile=./selected.fits"]
    two = one + [SimpleNamespace(command=["fstat", "/outputs/selected.fits", "a b"])]
    cmd = task_command(two, staged)
    assert cmd[:2] == ["sh", "-c"]
    out = subprocess.run(["bash", "-c", cmd[2].replace("evtselect", "echo").replace("fstat", "printf '[%s]'")],
                         capture_output=True, text=True, check=True).stdout
    assert out == "infile=/scratch/relman-inputs/0123/ft1 outfile=./selected.fits\n[./selected.fits][a b]"


def _scale_report():
    from release_manager.farm.scale_test import ScaleReport
    stats = {"n": 2, "min": 0.5, "median": 1.0, "p90": 1.5, "max": 1.5, "mean": 1.0}
    rows = [{"task": 1, "state": "done", "exit_code": 0, "host": "vm", "submit": "2026-12-01T05:00:00Z",
             "start": "2026-12-01T05:00:01Z", "end": "2026-12-01T05:00:02Z", "node_start": "2026-12-01T05:00:00.500000Z",
             "node_end": "2026-12-01T05:00:01.500000Z", "queue_seconds": 0.5, "run_seconds": 1.0,
             "overhead_seconds": 0.69, "verdict": "pass", "checks": 12, "detail": ""},
            {"task": 2, "state": "failed", "exit_code": 125, "host": "vm", "submit": "2026-12-01T05:00:00Z",
             "start": "2026-12-01T05:00:01Z", "end": "2026-12-01T05:00:03Z", "node_start": "2026-12-01T05:00:01Z",
             "node_end": "2026-12-01T05:00:02.500000Z", "queue_seconds": 1.0, "run_seconds": 1.5,
             "overhead_seconds": 1.19, "verdict": "error",
             "detail": "docker: Error response from daemon: manifest unknown <&>"}]
    summary = {"tasks": 2, "accounted": 2, "passed": 1, "failed": 1, "differ": 0, "wall_seconds": 2.5,
               "tasks_per_second": 0.8, "queue_seconds": stats, "run_seconds": stats, "overhead_seconds": stats,
               "program_seconds": 0.31, "hosts": ["vm"], "started": 2, "load_average": [1.0, 2.0, 3.0]}
    return ScaleReport("evtselect", "local-sge-docker", "sge", "docker", f"127.0.0.1:5000/fermi-lat/evtselect@{DIGEST}",
                       None, "42", 2, COMMAND, "/farm/work/relman-x", "fail", summary,
                       {"verdict": "pass", "reference": "host build", "reference_dir": "/r", "program_seconds": 0.31,
                        "docker_run_seconds": 0.61, "steps": [], "failures": []},
                       {"measured": False, "how": "estimated", "image_compressed_bytes": 34791439, "sif_bytes": None,
                        "served_bytes_estimate": 0, "node_had_image": True}, rows, 7, "/reports/x")


def test_scale_test_report_matches_golden():
    """The report's page, JSON and terminal table from one model (plots stubbed: their PNG bytes depend on
    matplotlib's version; plots() itself runs in the engine tests)."""
    import json
    from release_manager.farm.scale_test import html, table
    rep = _scale_report()
    got = {"scale-test.html": html(rep, pngs={"timeline": "PNG", "queue_seconds": "PNG"}, generated="2026-12-01T06:00:00+00:00"),
           "scale-test.json": json.dumps(rep.as_dict(), indent=2) + "\n",
           "scale-test.txt": "\n".join(table(rep)) + "\n"}
    for name, text in got.items():
        golden = GOLDEN / name
        if REGENERATE:
            golden.write_text(text)
        assert text == golden.read_text(), f"{name} differs from {golden}"
    assert "manifest unknown &lt;&amp;&gt;" in got["scale-test.html"]       # log tails are escaped
    assert "task 2: error (failed, exit 125): docker: Error response" in got["scale-test.txt"]
