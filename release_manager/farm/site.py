"""A site is one YAML file: which scheduler, which container runtime, what a job sees (bind mounts, the
calibration database, environment), where it runs (queue or partition) and its limits.

The sites relman ships are in release_manager/farm/sites/ (`--site NAME`); any other file is taken by
path (`--site path/to/site.yaml`). What cannot be known here (a farm's paths, queues, hosts) is a
visible `<placeholder: ...>`, as in the image specs: `--dry-run` renders it, submitting refuses it.
Errors name the file, the field, the value and what is allowed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from release_manager.errors import SpecError
from release_manager.spec.loader import SpecProblem, read_yaml
from release_manager.spec.model import ENV_KEY_RE, NAME_RE, SIZE_RE, SIZE_UNITS, _find_placeholders, is_placeholder

SITES_DIR = Path(__file__).parent / "sites"
# Host and container paths: absolute, no spaces, no ':' (it separates the parts of a bind), no shell
# metacharacters (they are quoted anyway: this keeps a path one word everywhere).
PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*\Z")
QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?\Z")
WALLTIME_RE = re.compile(r"^([0-9]{1,3}):([0-5][0-9]):([0-5][0-9])\Z")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*\Z")
BIND_KINDS = ("software", "calibration", "xrootd", "scratch")


def _matching(regex, what: str, placeholder: bool = False, optional: bool = False):
    """A field validator: the value matches regex (or is a placeholder / None where allowed)."""
    def check(v):
        if (optional and v is None) or (placeholder and is_placeholder(v)) or regex.match(v):
            return v
        raise ValueError(f"{v!r} is not {what}" + (" nor a '<placeholder: ...>'" if placeholder else ""))
    return check


_path = _matching(PATH_RE, "an absolute path of letters, digits and . _ / + @ - (no spaces, no ':')", placeholder=True)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bind(Strict):
    host: str = Field(description="path on the worker node (NFS/AFS area, xrootd mount, local scratch)")
    container: str = Field(description="where the job sees it")
    read_only: bool = True

    _paths = field_validator("host", "container")(_path)


class Binds(Strict):
    software: Optional[Bind] = None
    calibration: Optional[Bind] = None
    xrootd: Optional[Bind] = None
    scratch: Optional[Bind] = None


class CalibrationDB(Strict):
    """The calibration MySQL database: its host goes into the environment; the credentials file is bound
    read-only and only its path is passed (RELMAN_CALIBDB_CREDENTIALS): its content never reaches the
    job script, the log or the image."""
    host: str
    credentials_file: str
    container_path: str = "/run/relman/calibdb-credentials"

    _host = field_validator("host")(_matching(HOST_RE, "a host name (letters, digits, '.', '-', optional :port)", True))

    _paths = field_validator("credentials_file", "container_path")(_path)


class Limits(Strict):
    walltime: str = "01:00:00"
    memory: str = "2GiB"
    cpus: int = Field(1, ge=1, le=256)

    _walltime = field_validator("walltime")(_matching(WALLTIME_RE, "a wall time HH:MM:SS"))
    _memory = field_validator("memory")(_matching(SIZE_RE, f"a size such as 2GiB, 500MB ({', '.join(SIZE_UNITS)})"))

    @property
    def memory_mb(self) -> int:
        m = SIZE_RE.match(self.memory)
        assert m
        return max(1, int(float(m.group(1)) * SIZE_UNITS[m.group(2)] / 2**20))

    @property
    def walltime_seconds(self) -> int:
        h, m, s = (int(x) for x in self.walltime.split(":"))
        return h * 3600 + m * 60 + s


class ApptainerSettings(Strict):
    sif_cache: str = Field(description="folder on each node where SIFs are pulled once (shared by the node's jobs)")
    command: str = "apptainer"
    # Only where Apptainer cannot be installed on the node (the local stack: Debian 12): run it inside this
    # Docker image, with the privileges it needs there (see docs/farm.md).
    tool_image: Optional[str] = None
    no_https: bool = False

    _cache = field_validator("sif_cache")(_path)

    @field_validator("command")
    @classmethod
    def _command(cls, v):
        return v if v == "apptainer" else _path(v)

    _tool = field_validator("tool_image")(_matching(IMAGE_RE, "an image reference (lowercase letters, digits, . _ / : -)",
                                                    optional=True))


class Site(Strict):
    name: str
    description: str = ""
    scheduler: Literal["sge", "slurm", "lsf"]
    runtime: Literal["docker", "apptainer"]
    queue: Optional[str] = Field(None, description="queue (Grid Engine, LSF) or partition (Slurm); none: the default")
    submit_user: Optional[str] = Field(None, description="relman running as root submits as this user")
    workdir: str = Field(description="shared folder for job scripts, logs and outputs (one sub-folder per job)")
    binds: Binds = Binds()
    calibration_db: Optional[CalibrationDB] = None
    environment: Dict[str, str] = {}
    limits: Limits = Limits()
    apptainer: Optional[ApptainerSettings] = None

    _name = field_validator("name")(_matching(NAME_RE, "a site name: lowercase letters, digits, single '.', '_' or '-' "
                                                       "between them"))

    @field_validator("description")
    @classmethod
    def _one_line(cls, v):
        if "\n" in v or "\r" in v:
            raise ValueError("must be a single line")
        return v

    _queue = field_validator("queue")(_matching(QUEUE_RE, "a queue or partition name (letters, digits, _ . @ -)",
                                                placeholder=True, optional=True))
    _user = field_validator("submit_user")(_matching(USER_RE, "a user name (lowercase letters, digits, _ -)", optional=True))

    _workdir = field_validator("workdir")(_path)

    @field_validator("environment")
    @classmethod
    def _env(cls, v):
        for k, val in v.items():
            if not ENV_KEY_RE.match(k) or k.startswith("RELMAN_"):
                raise ValueError(f"{k!r} is not an environment variable name (letters, digits, '_'; "
                                 "RELMAN_* are set by relman)")
            if "\n" in val or "\0" in val:
                raise ValueError(f"{k}: the value must be a single line")
        return v

    @model_validator(mode="after")
    def _apptainer_section(self):
        if self.runtime == "apptainer" and self.apptainer is None:
            raise ValueError("runtime apptainer needs an `apptainer:` section (sif_cache at least)")
        return self

    def placeholders(self) -> List[Tuple[str, str]]:
        return list(_find_placeholders(self.model_dump(mode="json"), ()))

    def bind_list(self) -> List[Tuple[str, Bind]]:
        return [(k, getattr(self.binds, k)) for k in BIND_KINDS if getattr(self.binds, k) is not None]


def _allowed(loc) -> List[str]:
    model: type = Site
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))  # type: ignore[attr-defined]
        ann = field.annotation if field else None
        args = getattr(ann, "__args__", ()) or (ann,)
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)  # type: ignore[assignment]
        if model is None:
            return []
    return sorted(model.model_fields) if model else []  # type: ignore[attr-defined]


def _fmt(loc) -> str:
    return ".".join(str(p) for p in loc)


def load_site(ref: str) -> Tuple[Site, Path]:
    """A site by name (the shipped ones) or by path to a YAML file."""
    path = Path(ref)
    if not (ref.endswith((".yaml", ".yml")) or "/" in ref):
        path = SITES_DIR / f"{ref}.yaml"
        if not path.is_file():
            raise SpecError([SpecProblem("--site", "", f"no site named {ref!r}; known: {', '.join(site_names())} "
                                                       "(or give the path of a site file)")])
    data, lines, problems = read_yaml(path)
    if problems:
        raise SpecError(problems)
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        out = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown key (a typo?); allowed here: {', '.join(_allowed(loc))}"
            elif e["type"] == "missing":
                msg = "required field is missing"
            elif e.get("input") is not None and repr(e["input"]) not in msg:
                msg = f"{msg} (got {e['input']!r})"
            out.append(SpecProblem(str(path), _fmt(loc), msg, line))
        raise SpecError(out) from None
    return site, path


def site_names() -> List[str]:
    return sorted(p.stem for p in SITES_DIR.glob("*.yaml"))
