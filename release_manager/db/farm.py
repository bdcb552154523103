"""Farm runs in the release database: `relman farm submit`/`scale-test` record each job they submit;
`status`, `wait` and `collect` store what the scheduler's accounting says per task. The reads answer
"which image ran job 1234 at site X" (`relman farm show`) and "where did this image run" (`farm runs`).

    run = record_farm_run(site=..., scheduler=..., job_id=..., image_digest=..., ...)   -> farm_runs.id
    record_farm_tasks(run, [{"task": 1, "state": "done", "exit_code": 0, ...}])        upsert per task
    list_farm_runs(session, image=..., site=...) / farm_run_detail(session, job_id, site)
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict, Iterable, List, Optional

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from release_manager.db.connection import Database
from release_manager.db.models import FarmRun, FarmTask, Image, Package, SifImage, utcnow
from release_manager.db.queries import iso
from release_manager.db.records import _audit, _db, _package, default_actor
from release_manager.errors import NotFound, UsageError

FINISHED = ("done", "failed", "cancelled", "timeout")
TASK_FIELDS = ("state", "exit_code", "host", "queue_seconds", "run_seconds", "overhead_seconds", "verdict", "detail")


def _time(v) -> Optional[dt.datetime]:
    """ISO 8601 (…Z) or an aware/naive datetime -> naive UTC (the database's convention)."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    if v.tzinfo is not None:
        v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v


def _digest(name: str, v: Optional[str], required: bool) -> None:
    if v is None and not required:
        return
    if not (isinstance(v, str) and v.startswith("sha256:") and len(v) == 71):
        raise UsageError(f"farm run: {name} {v!r} is not sha256:<64 hex digits>")


def record_farm_run(*, site: str, scheduler: str, runtime: str, job_id: str, job_name: str, image_ref: str,
                    image_digest: str, tasks: int, command: List[str], directory: str, kind: str = "submit",
                    sif_ref: Optional[str] = None, sif_digest: Optional[str] = None, package: Optional[str] = None,
                    submitted_at: Optional[dt.datetime] = None, actor: Optional[str] = None,
                    db: Optional[Database] = None) -> int:
    """One submitted job; linked to the images row (and its package) and the sif_images row when the database
    knows their digests. Returns the farm_runs row id."""
    actor = actor or default_actor()
    _digest("image_digest", image_digest, True)
    _digest("sif_digest", sif_digest, False)
    if not str(job_id).isdigit():
        raise UsageError(f"farm run: job id {job_id!r} is not a scheduler job number")
    if kind not in ("submit", "scale-test"):
        raise UsageError(f"farm run: kind {kind!r}: submit or scale-test")

    def do(s: Session) -> int:
        img = s.scalar(select(Image).where(Image.digest == image_digest).order_by(Image.id.desc()).limit(1))
        pkg_id = _package(s, package, actor).id if package else (img.package_id if img else None)
        sif = s.scalar(select(SifImage).where(SifImage.registry_digest == sif_digest).order_by(SifImage.id.desc())
                       .limit(1)) if sif_digest else None
        row = FarmRun(site=site, scheduler=scheduler, runtime=runtime, job_id=str(job_id), job_name=job_name,
                      kind=kind, package_id=pkg_id, image_pk=img.id if img else None, image_ref=image_ref,
                      image_digest=image_digest, sif_ref=sif_ref, sif_digest=sif_digest,
                      sif_pk=sif.id if sif else None, tasks=tasks, command=list(command), directory=directory,
                      submitted_at=_time(submitted_at) or utcnow(), submitted_by=actor, state="submitted")
        s.add(row)
        s.flush()
        _audit(s, actor, "farm-submit", "farm_run", row.id, pkg_id, None, "submitted", site=site,
               job_id=str(job_id), image_digest=image_digest, sif_digest=sif_digest, tasks=tasks, kind=kind)
        return row.id
    return _db(db).write(do)


def run_state(states: Iterable[str], tasks: int) -> str:
    """submitted while a task is not finished; then done (every task exit 0) or failed."""
    states = list(states)
    if len(states) < tasks or any(st not in FINISHED for st in states):
        return "submitted"
    return "done" if all(st == "done" for st in states) else "failed"


def record_farm_tasks(run_id: int, rows: Iterable[Dict[str, Any]], state: Optional[str] = None,
                      summary: Optional[Dict[str, Any]] = None, actor: Optional[str] = None,
                      db: Optional[Database] = None) -> str:
    """Insert or update the run's task rows (keys: task, state, exit_code, host, submit, start, end, and a scale
    test's queue_seconds, run_seconds, overhead_seconds, verdict, detail). The run's state follows its tasks
    unless given. Returns the run's state."""
    actor = actor or default_actor()
    rows = list(rows)

    def do(s: Session) -> str:
        run = s.get(FarmRun, run_id)
        if run is None:
            raise NotFound(f"farm run {run_id} is not in the release database")
        have = {t.task: t for t in run.task_rows}
        for r in rows:
            t = have.get(int(r["task"]))
            if t is None:
                t = FarmTask(task=int(r["task"]), state=r.get("state") or "unknown")
                run.task_rows.append(t)
                have[t.task] = t
            for k in TASK_FIELDS:
                if k in r and r[k] is not None:
                    setattr(t, k, r[k])
            for k, col in (("submit", "submitted"), ("start", "started"), ("end", "ended")):
                if r.get(k):
                    setattr(t, col, _time(r[k]))
        old = run.state
        run.state = state or run_state((t.state for t in have.values()), run.tasks)
        run.collected_at = utcnow()
        if summary is not None:
            run.summary = summary
        if run.state != old:
            failed = sorted(t.task for t in have.values() if t.state != "done" or t.verdict in ("fail", "error"))
            _audit(s, actor, "farm-collect", "farm_run", run.id, run.package_id, old, run.state, site=run.site,
                   job_id=run.job_id, failed_tasks=failed[:50] or None)
        return run.state
    return _db(db).write(do)


# ---------------------------------------------------------------------- reads

def find_run(s: Session, job_id: str, site: Optional[str] = None) -> List[FarmRun]:
    """The runs with this scheduler job id (newest first); one per site unless a scheduler was reset."""
    q = select(FarmRun).where(FarmRun.job_id == str(job_id))
    if site:
        q = q.where(FarmRun.site == site)
    return list(s.scalars(q.order_by(FarmRun.id.desc())))


def _run_dict(r: FarmRun, package: Optional[str]) -> Dict[str, Any]:
    return {"id": r.id, "site": r.site, "scheduler": r.scheduler, "runtime": r.runtime, "job_id": r.job_id,
            "job_name": r.job_name, "kind": r.kind, "package": package, "image_row": r.image_pk,
            "image_ref": r.image_ref, "image_digest": r.image_digest, "sif_ref": r.sif_ref, "sif_digest": r.sif_digest,
            "sif_row": r.sif_pk, "tasks": r.tasks, "command": r.command, "directory": r.directory,
            "submitted_at": iso(r.submitted_at), "submitted_by": r.submitted_by, "state": r.state,
            "collected_at": iso(r.collected_at)}


def _task_dict(t: FarmTask) -> Dict[str, Any]:
    return {"task": t.task, "state": t.state, "exit_code": t.exit_code, "host": t.host, "submit": iso(t.submitted),
            "start": iso(t.started), "end": iso(t.ended), "queue_seconds": t.queue_seconds,
            "run_seconds": t.run_seconds, "overhead_seconds": t.overhead_seconds, "verdict": t.verdict,
            "detail": t.detail}


def list_farm_runs(s: Session, image: Optional[str] = None, site: Optional[str] = None,
                   package: Optional[str] = None, limit: Optional[int] = 50) -> List[Dict[str, Any]]:
    """Newest first. image: a digest (or its first 8+ hex digits), REPO@DIGEST, or the reference as given
    (HOST/REPO:TAG, or its end: REPO:TAG)."""
    q = select(FarmRun, Package.name).outerjoin(Package, Package.id == FarmRun.package_id)
    if image:
        text = image.strip()
        digest = text.rsplit("@", 1)[1] if "@" in text else text
        if digest.startswith("sha256:") or (len(digest) >= 8 and all(c in "0123456789abcdef" for c in digest)):
            full = digest if digest.startswith("sha256:") else "sha256:" + digest
            q = q.where(or_(FarmRun.image_digest.startswith(full), FarmRun.sif_digest.startswith(full)))
        else:
            q = q.where(or_(FarmRun.image_ref == text, FarmRun.image_ref.endswith("/" + text)))
    if site:
        q = q.where(FarmRun.site == site)
    if package:
        q = q.where(Package.name == package)
    q = q.order_by(FarmRun.id.desc())
    if limit:
        q = q.limit(limit)
    return [_run_dict(r, p) for r, p in s.execute(q)]


def farm_run_detail(s: Session, job_id: str, site: Optional[str] = None) -> Dict[str, Any]:
    runs = find_run(s, job_id, site)
    if not runs:
        where = f" at site {site}" if site else ""
        raise NotFound(f"no farm run with job id {job_id}{where} in the release database "
                       "(`relman farm runs` lists them)")
    if not site and len({r.site for r in runs}) > 1:
        raise UsageError(f"job id {job_id} was run at several sites ({', '.join(sorted({r.site for r in runs}))}): "
                         "give --site")
    r = runs[0]
    d = _run_dict(r, r.package.name if r.package else None)
    d["summary"] = r.summary
    d["task_rows"] = [_task_dict(t) for t in r.task_rows]
    if r.image is not None:
        d["image"] = {"id": r.image.id, "repository": r.image.repository, "tags": r.image.tags,
                      "status": r.image.status, "ref": r.image.ref, "variant": r.image.variant}
    return d


def farm_runs_of_image(s: Session, digest: str, limit: int = 20) -> List[Dict[str, Any]]:
    """For `images show`: where the image ran."""
    return list_farm_runs(s, image=digest, limit=limit)
