"""Per-task state of a farm job, read from the scheduler: Grid Engine's qstat (live tasks) and qacct
(finished ones), Slurm's squeue and its job-completion file (jobcomp/filetxt), LSF's `bjobs -json`
(LSF is not installed here: its parser is tested on a sample of the documented output,
tests/golden/farm/lsf-bjobs.json)."""
from __future__ import annotations

import datetime as dt
import json
import os
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
    host: Optional[str] = None

    def as_dict(self) -> dict:
        return asdict(self)


def _run(argv: List[str], ok=(0,), env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    if not shutil.which(argv[0]):
        raise SchedulerError(f"{argv[0]} not found: the scheduler's client is not installed here")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                             env={**os.environ, **env} if env else None)
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
                                f"failed={rec.get('failed', '')}" if failed else "", rec.get("hostname") or None)
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
                                f"Slurm {rec.get('JobState', '')} ExitCode={rec.get('ExitCode', '')}",
                                rec.get("NodeList") or None)
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


# ------------------------------------------------------------------ LSF

BJOBS_FIELDS = "jobid jobindex stat exit_code exit_reason exec_host submit_time start_time finish_time"
_LSF_STATE = {"DONE": "done", "PEND": "pending", "PSUSP": "pending", "WAIT": "pending", "RUN": "running",
              "USUSP": "running", "SSUSP": "running", "PROV": "running"}


def _lsf_time(v: Optional[str], now: dt.datetime) -> Optional[str]:
    """bjobs' times: `Dec  1 05:10` (with LSB_DISPLAY_YEAR=Y: `Dec  1 05:10 2026`, seconds on some
    versions), a trailing E/L/X flag on estimated or actual finish times; local time."""
    text = " ".join((v or "").split())
    text = re.sub(r" [ELX]$", "", text)
    if not text or text == "-":
        return None
    for fmt in ("%b %d %H:%M:%S %Y", "%b %d %H:%M %Y"):
        got = _iso_local(text, fmt)
        if got:
            return got
    for fmt in ("%b %d %H:%M:%S", "%b %d %H:%M"):
        try:
            t = dt.datetime.strptime(f"{now.year} {text}", f"%Y {fmt}")
        except ValueError:
            continue
        if t > now + dt.timedelta(days=1):          # no year printed: December's job read in January
            t = t.replace(year=now.year - 1)
        return t.astimezone().astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def parse_bjobs(text: str, job_id: str, now: Optional[dt.datetime] = None) -> Dict[int, TaskState]:
    """`bjobs -a -json -o "<BJOBS_FIELDS>" JOBID`: one record per array element."""
    now = now or dt.datetime.now()
    try:
        doc = json.loads(text)
    except ValueError:
        raise SchedulerError(f"bjobs did not print JSON: {text.strip()[:300]!r}") from None
    tasks: Dict[int, TaskState] = {}
    for rec in doc.get("RECORDS") or []:
        if str(rec.get("JOBID", "")) != job_id:
            continue
        if rec.get("ERROR"):
            continue                                  # "Job <n> is not found"
        index = str(rec.get("JOBINDEX") or "0")
        task = int(index) if index.isdigit() and int(index) > 0 else 1
        stat = rec.get("STAT", "")
        reason = rec.get("EXIT_REASON") or ""
        code_text = str(rec.get("EXIT_CODE") or "").strip()
        code: Optional[int] = int(code_text) if code_text.lstrip("-").isdigit() else None
        if stat == "DONE":
            state, code = "done", 0 if code is None else code
        elif stat == "EXIT":
            low = reason.lower()
            state = ("cancelled" if "killed by owner" in low or "term_owner" in low else
                     "timeout" if "runlimit" in low or "run limit" in low else "failed")
            code = 1 if code is None else code
        else:
            state = _LSF_STATE.get(stat, "pending")
            code = None
        host = re.sub(r"^\d+\*", "", (rec.get("EXEC_HOST") or "").split(":")[0]) or None   # 4*node:4*node2
        tasks[task] = TaskState(task, state, code, _lsf_time(rec.get("SUBMIT_TIME"), now),
                                _lsf_time(rec.get("START_TIME"), now) if state != "pending" else None,
                                _lsf_time(rec.get("FINISH_TIME"), now) if state not in ("pending", "running") else None,
                                f"LSF {stat}" + (f": {reason}" if reason else ""), None if host == "-" else host)
    return tasks


def _lsf(job_id: str) -> Dict[int, TaskState]:
    out = _run(["bjobs", "-a", "-json", "-o", BJOBS_FIELDS, job_id], ok=(0, 255), env={"LSB_DISPLAY_YEAR": "Y"})
    return parse_bjobs(out.stdout, job_id)


def status(site: Site, job_id: str) -> List[TaskState]:
    validate_job_id(job_id)
    tasks = {"sge": _sge, "slurm": _slurm, "lsf": _lsf}[site.scheduler](job_id)
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
