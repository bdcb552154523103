"""Per-task state of a farm job, read from the scheduler: Grid Engine's qstat (live tasks) and qacct
(finished ones), Slurm's squeue and its job-completion file (jobcomp/filetxt). LSF's bjobs is not
installed here: its status is refused with a clear error."""
from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

from release_manager.errors import NotFound, UsageError
from release_manager.farm.launcher import SchedulerError
from release_manager.farm.site import Site

FINISHED = ("done", "failed", "cancelled", "timeout")


@dataclass
class TaskState:
    task: int
    state: str                  # pending, running, done, failed, cancelled, timeout
    exit_code: Optional[int] = None
    submit: Optional[str] = None   # ISO 8601, UTC
    start: Optional[str] = None
    end: Optional[str] = None
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _run(argv: List[str], ok=(0,)) -> subprocess.CompletedProcess:
    if not shutil.which(argv[0]):
        raise SchedulerError(f"{argv[0]} not found: the scheduler's client is not installed here")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{argv[0]} did not answer in 60 s (is the scheduler up?)") from None
    if out.returncode not in ok:
        raise SchedulerError(f"{' '.join(argv)} failed (exit {out.returncode}): {(out.stdout + out.stderr).strip()[-300:]}")
    return out


def _iso_local(text: str, fmt: str) -> Optional[str]:
    """A local time printed by the scheduler as ISO 8601 UTC."""
    try:
        t = dt.datetime.strptime(" ".join(text.split()), fmt)
    except ValueError:
        return None
    return t.astimezone().astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_job_id(job_id: str) -> str:
    if not re.match(r"^[0-9]{1,12}\Z", job_id or ""):
        raise UsageError(f"job id {job_id!r} is not a scheduler job number (digits)")
    return job_id


# ------------------------------------------------------------------ Grid Engine

def _sge(job_id: str) -> Dict[int, TaskState]:
    tasks: Dict[int, TaskState] = {}
    out = _run(["qacct", "-j", job_id], ok=(0, 1))
    for block in out.stdout.split("=" * 62):
        rec = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            if key:
                rec[key] = value.strip()
        if rec.get("jobnumber") != job_id:
            continue
        task = int(rec["taskid"]) if rec.get("taskid", "undefined").isdigit() else 1
        failed = int(rec.get("failed", "0").split()[0])
        code = int(rec.get("exit_status", "0").split()[0])
        fmt = "%a %b %d %H:%M:%S %Y"
        state = "done" if failed == 0 and code == 0 else ("cancelled" if failed == 100 and code == 137 else "failed")
        tasks[task] = TaskState(task, state, code, _iso_local(rec.get("qsub_time", ""), fmt),
                                _iso_local(rec.get("start_time", ""), fmt), _iso_local(rec.get("end_time", ""), fmt),
                                f"failed={rec.get('failed', '')}" if failed else "")
    live = _run(["qstat", "-u", "*", "-g", "d"]).stdout
    for line in live.splitlines():
        f = line.split()
        if len(f) < 8 or f[0] != job_id:
            continue
        state, stamp = f[4], _iso_local(f"{f[5]} {f[6]}", "%m/%d/%Y %H:%M:%S")
        task = int(f[-1]) if f[-1].isdigit() and len(f) >= 9 else 1
        if task in tasks:
            continue
        running = "r" in state or "t" in state
        tasks[task] = TaskState(task, "running" if running else "pending", None,
                                None if running else stamp, stamp if running else None, None,
                                f"qstat state {state}")
    return tasks


# ------------------------------------------------------------------ Slurm

def _jobcomp_path() -> str:
    out = _run(["scontrol", "show", "config"]).stdout
    m = re.search(r"^JobCompLoc\s*=\s*(\S+)", out, re.M)
    if not m:
        raise SchedulerError("Slurm has no JobCompLoc (scripts/farm/slurm sets jobcomp/filetxt)")
    return m.group(1)


def _slurm_time(v: Optional[str]) -> Optional[str]:
    return _iso_local(v, "%Y-%m-%dT%H:%M:%S") if v and v not in ("Unknown", "N/A", "None") else None


def _slurm(job_id: str) -> Dict[int, TaskState]:
    tasks: Dict[int, TaskState] = {}
    try:
        lines = open(_jobcomp_path(), encoding="utf-8", errors="replace").read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        rec = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        array = rec.get("ArrayJobId")
        if array != job_id and not (rec.get("JobId") == job_id and array in (None, "", "4294967294")):
            continue
        task = int(rec["ArrayTaskId"]) if rec.get("ArrayTaskId", "").isdigit() else 1
        code = int(rec.get("ExitCode", "0:0").split(":")[0])
        sig = int(rec.get("ExitCode", "0:0").split(":")[-1] or 0)
        state = {"COMPLETED": "done", "CANCELLED": "cancelled", "TIMEOUT": "timeout"}.get(rec.get("JobState", ""), "failed")
        tasks[task] = TaskState(task, state, code if not sig else 128 + sig, _slurm_time(rec.get("SubmitTime")),
                                _slurm_time(rec.get("StartTime")), _slurm_time(rec.get("EndTime")),
                                f"Slurm {rec.get('JobState', '')} ExitCode={rec.get('ExitCode', '')}")
    out = _run(["squeue", "-h", "-r", "-j", job_id, "-o", "%F|%K|%T|%V|%S"], ok=(0, 1))
    for line in out.stdout.splitlines():
        f = line.strip().split("|")
        if len(f) != 5 or f[0] != job_id:
            continue
        task = int(f[1]) if f[1].isdigit() else 1
        if task in tasks:
            continue
        running = f[2] in ("RUNNING", "COMPLETING", "CONFIGURING")
        tasks[task] = TaskState(task, "running" if running else "pending", None, _slurm_time(f[3]),
                                _slurm_time(f[4]) if running else None, None, f"squeue {f[2]}")
    return tasks


def status(site: Site, job_id: str) -> List[TaskState]:
    validate_job_id(job_id)
    if site.scheduler == "lsf":
        raise SchedulerError(f"site {site.name}: LSF status needs bjobs, which is not installed here")
    tasks = (_sge if site.scheduler == "sge" else _slurm)(job_id)
    if not tasks:
        raise NotFound(f"site {site.name}: the {site.scheduler} scheduler knows no job {job_id}")
    return [tasks[k] for k in sorted(tasks)]


def wait(site: Site, job_id: str, tasks: Optional[int] = None, timeout: float = 3600, poll: float = 1.0,
         echo: Callable[[str], None] = lambda m: None) -> List[TaskState]:
    """Polls until every task is finished in the accounting (all `tasks` of them when given; else: none
    live and the count steady over two polls, as Grid Engine's accounting lags a second)."""
    deadline = time.monotonic() + timeout
    last_count = -1
    last_line = ""
    while True:
        try:
            rows = status(site, job_id)
        except NotFound:
            rows = []
        finished = [r for r in rows if r.state in FINISHED]
        live = [r for r in rows if r.state not in FINISHED]
        line = f"job {job_id}: {len(finished)} finished, {len(live)} pending or running"
        if line != last_line:
            echo(line)
            last_line = line
        if tasks is not None and len(finished) >= tasks:
            return rows
        if tasks is None and rows and not live and len(finished) == last_count:
            return rows
        last_count = len(finished) if not live else -1
        if time.monotonic() > deadline:
            raise SchedulerError(f"job {job_id} not finished after {timeout:.0f} s ({line})")
        time.sleep(poll)
