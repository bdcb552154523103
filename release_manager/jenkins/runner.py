"""`relman pipeline run JOB --local`: the job's stages, in order, on this machine.

The same model that renders the Jenkinsfile gives the stages; each stage's command is the exact
text between the single quotes of its `sh '...'` step, run with `bash -e -c` and the parameters
passed as environment variables (never interpolated into the command). Parameters are validated
first; the run stops at the first failing stage. `relman pipeline prepare` is what the first stage
of every generated pipeline runs in Jenkins: the same validation, reading the environment.
"""
from __future__ import annotations

import getpass
import glob
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

from release_manager.errors import RelmanError
from release_manager.jenkins import params as P
from release_manager.jenkins.model import REPORTS_DIR, RESULTS_DIR, Job


class StageFailed(RelmanError):
    """A stage of a pipeline exited non-zero."""


@dataclass
class RunResult:
    job: str
    stages: List[tuple] = field(default_factory=list)    # (stage name, exit code)
    artifacts: List[str] = field(default_factory=list)


def local_context(environ: Mapping[str, str]) -> Dict[str, str]:
    """What Jenkins would provide: BUILD_USER_ID from the environment, else the local user name."""
    ctx = {}
    user = environ.get("BUILD_USER_ID") or getpass.getuser()
    ctx["BUILD_USER_ID"] = user
    return ctx


def stage_env(job: Job, values: Mapping[str, str], base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(dict(job.environment))
    env.update(values)
    return env


def run_local(job: Job, given: Mapping[str, str], workspace: Path, echo: Callable[[str], None] = print,
              base_env: Optional[Mapping[str, str]] = None, shell: str = "bash") -> RunResult:
    base = dict(os.environ if base_env is None else base_env)
    values = P.validate(job, given, local_context(base))       # raises UsageError before anything runs
    env = stage_env(job, values, base)
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    result = RunResult(job.full_name)
    for stage in job.stages:
        if stage.kind == "checkout":
            echo(f"[{stage.name}] skipped locally: the workspace is {workspace}")
            continue
        missing = [var for c in stage.credentials for _, var in c.variables if var not in env]
        if missing:
            echo(f"[{stage.name}] note: Jenkins binds {', '.join(missing)} from its credentials; "
                 "not set here")
        echo(f"[{stage.name}] {stage.command}")
        sys.stdout.flush()
        rc = subprocess.run([shell, "-e", "-c", stage.command], env=env, cwd=workspace).returncode
        result.stages.append((stage.name, rc))
        if rc != 0:
            raise StageFailed(f"{job.full_name}: stage {stage.name!r} failed with exit code {rc}; "
                              "later stages not run")
    for pattern in filter(None, [job.junit] + (job.archive or "").split(",")):
        result.artifacts += sorted(os.path.relpath(p, workspace)
                                   for p in glob.glob(str(workspace / pattern), recursive=True))
    if result.artifacts:
        echo("artifacts: " + ", ".join(result.artifacts))
    echo(f"{job.full_name}: SUCCESS ({len(result.stages)} stage(s))")
    return result


def prepare(job: Job, environ: Mapping[str, str], workspace: Path, echo: Callable[[str], None] = print,
            warn: Callable[[str], None] = print) -> Dict[str, str]:
    """First stage of every generated pipeline: validate parameters from the environment, make folders."""
    given = {p.name: environ[p.name] for p in job.parameters if p.name in environ}
    values = P.validate(job, given, {c.name: environ.get(c.name, "") for c in job.context})
    in_jenkins = bool(environ.get("JENKINS_URL") or environ.get("BUILD_URL"))
    if job.allowed_groups and (in_jenkins or "BUILD_USER_GROUPS" in environ):
        P.check_groups(job, environ.get("BUILD_USER_GROUPS", ""))
    generated = environ.get("RELMAN_JOB_SPEC_HASH")
    if generated and job.spec_hash and generated != job.spec_hash:
        warn(f"warning: {job.full_name} was generated from spec {generated[:12]}, this relman has "
             f"{job.spec_hash[:12]}: run the seed job (or `relman jobs sync`)")
    for d in (RESULTS_DIR, REPORTS_DIR):
        (Path(workspace) / d).mkdir(parents=True, exist_ok=True)
    shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "no parameters"
    echo(f"{job.full_name}: {shown}")
    return values
