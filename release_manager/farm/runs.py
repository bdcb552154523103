"""A farm job from the command line to the release database: resolve the image (and SIF) to digests,
write and submit the job script (release_manager.farm.launcher), record the run; later store what the
scheduler's accounting says per task (release_manager.farm.collect). `relman farm submit` and
`relman farm scale-test` both submit through here, so every run they make is recorded."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from release_manager.errors import UsageError
from release_manager.farm import launcher
from release_manager.farm.accounting import TaskState
from release_manager.farm.site import Site


@dataclass
class Submitted:
    site: str
    scheduler: str
    runtime: str
    job_id: Optional[str]
    job_name: str
    tasks: int
    image: str                 # pinned: HOST/REPO@sha256:...
    sif: Optional[str]
    script: str
    directory: str
    submitted_epoch: float
    record: Optional[int] = None   # farm_runs.id

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def registry_for(settings):
    from release_manager.registry import Registry, load_credentials

    def get(host):
        return Registry(host, load_credentials(settings, host), insecure=settings.registry_insecure)
    return get


def database(settings):
    """The release database, its schema checked now: a submission that could not be recorded is refused
    before anything is written or submitted."""
    from release_manager.db.connection import for_settings
    db = for_settings(settings)
    db.require_schema()
    return db


def submit(settings, site: Site, image: str, command: List[str], tasks: int, sif: Optional[str] = None,
           workdir: Optional[Path] = None, dry_run: bool = False, record: bool = True, kind: str = "submit",
           package: Optional[str] = None, extra_env: Optional[Dict[str, str]] = None) -> Submitted:
    cmd = launcher.validate_command(command[0], command[1:])
    ph = site.placeholders()
    if ph and not dry_run:
        raise UsageError(f"site {site.name} still has {len(ph)} placeholder(s) to fill before submitting, e.g. "
                         f"{ph[0][0]}: {ph[0][1]} (use --dry-run to render the job script)")
    if ph and not workdir:
        raise UsageError(f"site {site.name}: its workdir is a placeholder; give --workdir for --dry-run")
    launcher.parse_ref(image)                    # bad arguments are refused before the database is asked
    if sif:
        launcher.parse_ref(sif, "--sif")
    if not 1 <= tasks <= launcher.MAX_TASKS:
        raise UsageError(f"--tasks {tasks}: between 1 and {launcher.MAX_TASKS}")
    db = database(settings) if record and not dry_run else None
    reg = registry_for(settings)
    ref = launcher.resolve(image, reg)
    sif_ref = None
    if site.runtime == "apptainer":
        sif_ref = launcher.resolve(sif or launcher.default_sif_ref(image), reg, what="--sif")
        check_sif_source(settings, db, sif_ref, ref)
    job = launcher.prepare(site, ref, cmd, tasks, sif=sif_ref, workdir=workdir)
    if sif_ref is not None:
        job.entrypoint = launcher.image_entrypoint(reg, ref)
    job.extra_env.update(extra_env or {})
    script = launcher.write(job)
    t0 = time.time()
    try:
        job_id = None if dry_run else launcher.submit(job, script)
    except Exception:
        shutil.rmtree(job.directory, ignore_errors=True)   # a refused job leaves nothing behind
        raise
    res = Submitted(site.name, site.scheduler, site.runtime, job_id, job.name, tasks, ref.pinned,
                    sif_ref.pinned if sif_ref else None, str(script), str(job.directory), t0)
    if db is not None and job_id:
        from release_manager.db.farm import record_farm_run
        res.record = record_farm_run(
            site=site.name, scheduler=site.scheduler, runtime=site.runtime, job_id=job_id, job_name=job.name,
            image_ref=image, image_digest=ref.digest, sif_ref=(sif or launcher.default_sif_ref(image)) if sif_ref else None,
            sif_digest=sif_ref.digest if sif_ref else None, tasks=tasks, command=cmd, directory=str(job.directory),
            kind=kind, package=package, submitted_at=_utc(t0), db=db)
    return res


def check_sif_source(settings, db, sif_ref, image_ref) -> None:
    """Refuse a SIF relman built from another image than the job's: a channel's `-sif` tag (or any `REPO:TAG-sif`)
    can lag behind its image tag, and the farm would then run other software than the run records. A SIF the
    release database does not know (not built by relman) is taken as given."""
    from sqlalchemy.exc import SQLAlchemyError
    from release_manager.db.connection import for_settings
    from release_manager.db.queries import sif_sources
    try:
        with (db or for_settings(settings)).read() as s:
            made_from = sif_sources(s, sif_ref.digest)
    except SQLAlchemyError:     # no release database here (a dry run on a new machine): nothing to compare with
        return
    if made_from and image_ref.digest not in made_from:
        raise UsageError(f"--sif {sif_ref.pinned} was built from {', '.join(made_from)}, not from the image "
                         f"{image_ref.pinned}: give the SIF of that image (`relman sif PACKAGE --image TAG --push` "
                         f"makes and pushes it as TAG-sif)")


def _utc(t: float):
    import datetime as dt
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def store(settings, site: Site, job_id: str, states: List[TaskState], extra: Optional[Dict[int, Dict]] = None,
          state: Optional[str] = None, summary: Optional[Dict[str, Any]] = None, db=None):
    """The task rows of a recorded run, with the node times and log tails (collect.task_rows); None when the
    release database does not know the job (submitted with --no-record, or not by relman).
    Returns (run id, run state, rows)."""
    from release_manager.db.farm import find_run, record_farm_tasks
    from release_manager.farm.collect import task_rows
    db = db or database(settings)
    with db.read() as s:
        runs = find_run(s, job_id, site.name)
        run = runs[0] if runs else None
        if run is None:
            return None
        run_id, directory, submitted = run.id, Path(run.directory), run.submitted_at
    import datetime as dt
    sub = submitted.replace(tzinfo=dt.timezone.utc).timestamp()
    rows = task_rows(states, directory, sub)
    for r in rows:
        r.update((extra or {}).get(r["task"], {}))
    new_state = record_farm_tasks(run_id, rows, state=state, summary=summary, db=db)
    return run_id, new_state, rows
