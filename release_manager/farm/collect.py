"""`relman farm collect`: a job's per-task rows from the scheduler's accounting (release_manager.farm.accounting)
with what each task wrote on the node: its start and end to the nanosecond and the node's name
(task-N.times, written by the job script) and, for a task that did not succeed, the end of its log. Stored
into the release database's farm_tasks rows when the job was recorded at submit."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from release_manager.farm.accounting import TaskState

LOG_TAIL_LINES = 15
LOG_TAIL_CHARS = 2000


@dataclass
class NodeTimes:
    start: Optional[float] = None      # epoch seconds
    end: Optional[float] = None
    exit_code: Optional[int] = None
    host: Optional[str] = None


def node_times(directory: Path, task: int) -> NodeTimes:
    """task-N.times: `start EPOCH HOST` then, when the script exits, `end EPOCH EXIT`."""
    nt = NodeTimes()
    try:
        lines = (Path(directory) / f"task-{task}.times").read_text().splitlines()
    except OSError:
        return nt
    for line in lines:
        f = line.split()
        try:
            if f[:1] == ["start"] and len(f) >= 2:
                nt.start, nt.host = float(f[1]), (f[2] if len(f) > 2 else None)
            elif f[:1] == ["end"] and len(f) >= 3:
                nt.end, nt.exit_code = float(f[1]), int(f[2])
        except ValueError:
            continue
    return nt


def log_tail(directory: Path, task: int, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = (Path(directory) / f"task-{task}.out").read_text(errors="replace")
    except OSError:
        return f"(no log: task-{task}.out is missing)"
    return "\n".join(text.rstrip().splitlines()[-lines:])[-LOG_TAIL_CHARS:]


def epoch(iso: Optional[str]) -> Optional[float]:
    if not iso:
        return None
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def iso_of(t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task_rows(states: List[TaskState], directory: Optional[Path], submitted: Optional[float] = None) -> List[Dict]:
    """One dict per task: the accounting's fields, `node_start`/`node_end` (ISO, sub-second) and
    `queue_seconds` (submit -> start on the node; submit is relman's own time when given, else the
    scheduler's) and `run_seconds` (start -> end on the node, so container/SIF start included); the log's
    end in `detail` for a task that did not succeed."""
    rows = []
    for st in states:
        d = st.as_dict()
        nt = node_times(directory, st.task) if directory else NodeTimes()
        sub = submitted if submitted is not None else epoch(st.submit)
        start = nt.start if nt.start is not None else epoch(st.start)
        end = nt.end if nt.end is not None else epoch(st.end)
        d["node_start"], d["node_end"] = iso_of(nt.start), iso_of(nt.end)
        d["host"] = st.host or nt.host
        d["queue_seconds"] = round(start - sub, 3) if start is not None and sub is not None else None
        d["run_seconds"] = round(end - start, 3) if end is not None and start is not None else None
        if st.state in ("failed", "cancelled", "timeout") and directory:
            d["detail"] = f"{st.detail}\n{log_tail(directory, st.task)}".strip()
        rows.append(d)
    return rows
