"""`relman farm submit`: one command line for every site. The image reference is resolved to a digest,
the job script is rendered from the scheduler's template (release_manager/templates/farm/) with the
runtime's part, written into the job's folder and submitted as the site's farm user.

Every word that reaches the script is decided and shell-quoted here (shlex.quote): the program and its
arguments are data, never shell code. The calibration database's credentials file is bound read-only;
only its path reaches the script.
"""
from __future__ import annotations

import datetime as dt
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import jinja2

from release_manager.errors import RelmanError, UsageError
from release_manager.farm.site import PATH_RE, Site

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "farm"
# A program is one word: a name on the image's PATH or an absolute path.
PROGRAM_RE = re.compile(r"^[A-Za-z0-9_./+-]{1,255}\Z")
# host[:port]/repo[/repo...](:tag|@sha256:digest)
IMAGE_REF_RE = re.compile(r"^(?P<host>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
                          r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?\Z")
MAX_TASKS = 75000   # Grid Engine's default max_aj_tasks; Slurm and LSF default lower (MaxArraySize, MAX_JOB_ARRAY_SIZE)
SUBMIT = {"sge": "qsub", "slurm": "sbatch", "lsf": "bsub"}


class SchedulerError(RelmanError):
    """The scheduler refused a submission or could not be reached."""


@dataclass(frozen=True)
class ImageRef:
    host: str
    repo: str
    tag: Optional[str]
    digest: str

    @property
    def pinned(self) -> str:
        return f"{self.host}/{self.repo}@{self.digest}"


def parse_ref(ref: str, what: str = "--image") -> re.Match:
    m = IMAGE_REF_RE.match(ref or "")
    if not m or not (m.group("tag") or m.group("digest")):
        raise UsageError(f"{what} {ref!r} is not an image reference HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:DIGEST")
    return m


def resolve(ref: str, registry_for, what: str = "--image") -> ImageRef:
    """The reference pinned to the digest the registry serves now (a digest given is checked to exist)."""
    m = parse_ref(ref, what)
    host, repo, tag = m.group("host"), m.group("repo"), m.group("tag")
    digest = registry_for(host).manifest_digest(repo, m.group("digest") or tag)
    if not digest:
        raise UsageError(f"{what} {ref!r}: not in registry {host} (push it first)")
    if m.group("digest") and digest != m.group("digest"):
        raise UsageError(f"{what} {ref!r}: the registry answers digest {digest}")
    return ImageRef(host, repo, tag, digest)


def default_sif_ref(image_ref: str) -> str:
    """The SIF made from REPO:TAG is pushed next to it as REPO:TAG-sif (an ORAS artifact)."""
    m = parse_ref(image_ref)
    if not m.group("tag"):
        raise UsageError(f"--image {image_ref!r} has no tag to derive the SIF's from: give --sif REF")
    return f"{m.group('host')}/{m.group('repo')}:{m.group('tag')}-sif"


def validate_command(program: str, args: Sequence[str]) -> List[str]:
    if not PROGRAM_RE.match(program or ""):
        raise UsageError(f"program {program!r} is not one word of letters, digits and _ . / + - (a name on the "
                         "image's PATH or an absolute path)")
    for a in args:
        if "\0" in a or "\n" in a or "\r" in a:
            raise UsageError(f"argument {a!r} holds a NUL or a line break; arguments are single lines")
    return [program, *args]


@dataclass
class Job:
    site: Site
    image: ImageRef
    command: List[str]
    tasks: int
    name: str
    directory: Path
    sif: Optional[ImageRef] = None
    uid_note: str = ""
    extra_env: Dict[str, str] = field(default_factory=dict)
    entrypoint: List[str] = field(default_factory=list)   # Apptainer: the image's ENTRYPOINT, run before the command

    def script_name(self) -> str:
        return "job.sh"


def image_entrypoint(registry_for, ref: ImageRef) -> List[str]:
    """The image's ENTRYPOINT, from its config in the registry. An Apptainer task runs it before the command, as
    `docker run` does (relman's uniform entrypoint: PFILES in a writable folder, `--version`...). Not through
    `apptainer run`: the runscript Apptainer makes from a Docker image passes the arguments through a shell's
    `eval`, so a `$` or a quote in them is expanded or breaks (seen: `$f` in an `sh -c` script came out empty)."""
    reg = registry_for(ref.host)
    if reg.manifest_digest(ref.repo, ref.digest) is None:
        raise UsageError(f"{ref.pinned}: not found in the registry")
    config = reg.image_config(ref.repo, ref.digest) or {}   # an index or an artifact: no config to read
    return [str(w) for w in (config.get("config") or {}).get("Entrypoint") or []]


def job_name(site: Site, now: Optional[dt.datetime] = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"relman-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _q(v: str) -> str:
    return shlex.quote(str(v))


def render(job: Job) -> str:
    """The job script: the scheduler's template (its directives) with the runtime's body."""
    site = job.site
    binds: List[Tuple[str, str, bool]] = [(b.host, b.container, b.read_only) for _, b in site.bind_list()]
    env: Dict[str, str] = dict(site.environment)
    if site.calibration_db:
        db = site.calibration_db
        binds.append((db.credentials_file, db.container_path, True))
        env["RELMAN_CALIBDB_HOST"] = db.host
        env["RELMAN_CALIBDB_CREDENTIALS"] = db.container_path
    env.update(job.extra_env)
    env["RELMAN_IMAGE"] = job.image.pinned
    directory = str(job.directory)
    task_var = {"sge": "SGE_TASK_ID", "slurm": "SLURM_ARRAY_TASK_ID", "lsf": "LSB_JOBINDEX"}[site.scheduler]
    job_var = {"sge": "JOB_ID", "slurm": "SLURM_ARRAY_JOB_ID", "lsf": "LSB_JOBID"}[site.scheduler]
    # the signals a cancelled job receives first: Grid Engine's -notify sends USR2, Slurm and LSF TERM
    # (LSF's bkill sends INT first)
    signals = {"sge": "USR2 TERM", "slurm": "TERM", "lsf": "INT TERM"}[site.scheduler]
    ctx = {
        "site": site, "job": job, "q": _q, "directory": _q(directory),
        "task_var": task_var, "job_var": job_var, "signals": signals,
        "command": " ".join(_q(w) for w in job.command),
        "entrypoint": " ".join(_q(w) for w in job.entrypoint),
        "image": _q(job.image.pinned), "env": [(k, _q(v)) for k, v in sorted(env.items())],
        "env_names": sorted(env), "binds": [(_q(h), _q(c), ro) for h, c, ro in binds],
        "walltime_minutes": -(-site.limits.walltime_seconds // 60),
        "memory_mb": site.limits.memory_mb,
        "queue": _q(site.queue) if site.queue else None,
        # directives are not parsed by a shell: their paths are of PATH_RE's safe characters, unquoted
        "raw_directory": directory,
        "output": f"{directory}/task-" + {"sge": "$TASK_ID", "slurm": "%a", "lsf": "%I"}[site.scheduler] + ".out",
        "array_name": _q(f"{job.name}[1-{job.tasks}]"),
    }
    if site.runtime == "apptainer":
        assert job.sif and site.apptainer
        ap = site.apptainer
        ctx.update({
            "sif_ref": _q(f"oras://{job.sif.pinned}"),
            "sif_file": _q(f"{ap.sif_cache}/{job.sif.digest.replace(':', '-')}.sif"),
            "sif_cache": _q(ap.sif_cache), "apptainer": ap, "apptainer_command": _q(ap.command),
            "tool_image": _q(ap.tool_image) if ap.tool_image else None,
        })
    envt = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    return envt.get_template(f"{site.scheduler}.sh.j2").render(**ctx)


def _as_user(site: Site, argv: List[str]) -> List[str]:
    """relman as root submits as the site's farm user (schedulers refuse or should not run root's jobs)."""
    if site.submit_user and os.geteuid() == 0 and site.submit_user != "root":
        return ["runuser", "-u", site.submit_user, "--", *argv]
    return argv


def prepare(site: Site, image: ImageRef, command: List[str], tasks: int, sif: Optional[ImageRef] = None,
            name: Optional[str] = None, workdir: Optional[Path] = None) -> Job:
    if not 1 <= tasks <= MAX_TASKS:
        raise UsageError(f"--tasks {tasks}: between 1 and {MAX_TASKS}")
    if site.runtime == "apptainer" and sif is None:
        raise UsageError(f"site {site.name} runs Apptainer: a SIF reference is needed (--sif)")
    name = name or job_name(site)
    if workdir is not None and not PATH_RE.match(str(workdir)):
        raise UsageError(f"--workdir {str(workdir)!r} is not an absolute path of letters, digits and . _ / + @ - "
                         "(no spaces, no ':')")
    base = Path(workdir) if workdir else Path(site.workdir)
    return Job(site=site, image=image, command=command, tasks=tasks, name=name, directory=base / name, sif=sif)


def write(job: Job) -> Path:
    """The job's folder with its script, owned by the farm user (its outputs and logs will be too)."""
    text = render(job)
    job.directory.mkdir(parents=True, exist_ok=False)
    path = job.directory / job.script_name()
    path.write_text(text)
    path.chmod(0o755)
    user = job.site.submit_user
    if user and os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            shutil.rmtree(job.directory)
            raise UsageError(f"site {job.site.name}: submit_user {user!r} does not exist on this machine "
                             "(scripts/local-stack up --farm makes relfarm)") from None
        for p in (job.directory, path):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    return path


def submit(job: Job, script: Path) -> str:
    """Submits the written script; returns the scheduler's job id."""
    site = job.site
    tool = SUBMIT[site.scheduler]
    if not shutil.which(tool):
        raise SchedulerError(f"site {site.name}: {tool} not found: the {site.scheduler} client is not installed here")
    if site.scheduler == "sge":
        argv = ["qsub", "-terse", str(script)]
    elif site.scheduler == "slurm":
        argv = ["sbatch", "--parsable", str(script)]
    else:
        argv = ["bsub"]
    try:
        if site.scheduler == "lsf":   # bsub reads the script on its standard input
            out = subprocess.run(_as_user(site, argv), stdin=script.open(), capture_output=True, text=True,
                                 timeout=120, cwd=job.directory)
        else:
            out = subprocess.run(_as_user(site, argv), capture_output=True, text=True, timeout=120, cwd=job.directory)
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"site {site.name}: {tool} did not answer in 120 s (is the scheduler up?)") from None
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0:
        raise SchedulerError(f"site {site.name}: {tool} refused the job (exit {out.returncode}): {text[-500:]} "
                             "(is the scheduler up? scripts/local-stack status)")
    first = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    m = {"sge": re.match(r"^(\d+)(?:\.\S+)?$", first), "slurm": re.match(r"^(\d+)(?:;\S+)?$", first),
         "lsf": re.search(r"Job <(\d+)>", text)}[site.scheduler]
    if not m:
        raise SchedulerError(f"site {site.name}: cannot read a job id in {tool}'s answer: {text[:300]!r}")
    return m.group(1)

