"""Specs -> the Jenkins job model: every decision about the jobs, made once, in Python.

The Jenkinsfile, the config.xml and the local runner all read the same `Job` objects, so the
parameters Jenkins asks for, the properties it stores and the commands that run cannot drift.

Jobs, one folder per package:
    <pkg>/build-<variant>          every variant of the spec (and build-component-<name>)
    <pkg>/nightly                  only where spec.jenkins.nightly is set (cron from the spec)
    <pkg>/promote                  TAG, TARGET, REASON (CHANNEL with spec.channels); for spec.jenkins.promote_by
    <pkg>/debug-build              REF, REQUESTER; for spec.jenkins.debug_build_by (packages with a debug variant)
    <pkg>/maintenance              daily: relman gc, relman status --html (archived), then relman reconcile
                                   (fails while database and registry differ)
    relman-seed                    the root Jenkinsfile: specs check + jobs sync --prune
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from release_manager.errors import UsageError
from release_manager.spec.loader import SpecSet
from release_manager.targets import verified_variants

MARKER = "relman-managed"
SEED_JOB = "relman-seed"
RESULTS_DIR = "results"
REPORTS_DIR = "reports"
VERIFIED_VARIANTS = verified_variants()   # the targets say: the same set as the nightly
PROMOTE_TIMEOUT_MINUTES = 60
MAINTENANCE_CRON = "H 5 * * *"            # after the nightlies (H 2-3), before the working day
MAINTENANCE_TIMEOUT_MINUTES = 60
STATUS_SITE_DIR = "status-site"             # `relman status --html` in the maintenance job, archived


class JenkinsOptions(BaseSettings):
    """Jenkins-only settings (RELMAN_JENKINS_*), next to settings.jenkins_* in config.py."""
    model_config = SettingsConfigDict(env_prefix="RELMAN_JENKINS_", extra="ignore")

    registry_credentials_id: str = Field("relman-registry", description="usernamePassword credentials for pushes")
    db_credentials_id: Optional[str] = Field("relman-db-url", description="secret text credentials holding RELMAN_DB_URL; empty: none")
    api_credentials_id: str = Field("relman-jenkins-api", description="usernamePassword (user, API token) the seed job syncs with")
    seed_label: str = Field("relman", description="agent label of the seed job")
    scm_branch: str = Field("*/master", description="branch of the Release Manager repository jobs load scripts from")
    scm_script_root: str = Field("jenkinsfiles/jobs", description="folder of committed rendered Jenkinsfiles (scm mode)")
    seed_poll: str = Field("H/15 * * * *", description="how often the seed job polls the repository")


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    check: str                 # key of params.CHECKS
    default: str = ""
    required: bool = True


@dataclass(frozen=True)
class Credential:
    """One withCredentials binding: kind usernamePassword (user, password variables) or string (variable)."""
    kind: str
    id: str
    variables: Tuple[Tuple[str, str], ...]   # (binding argument, environment variable)


@dataclass(frozen=True)
class Stage:
    name: str
    command: str = ""          # the shell command exactly as it sits between the single quotes of sh '...'
    credentials: Tuple[Credential, ...] = ()
    kind: str = "sh"           # sh | checkout (checkout scm: seed job only)


@dataclass(frozen=True)
class Scm:
    url: str
    branch: str
    script_path: str


@dataclass
class Job:
    folder: Optional[str]
    name: str
    kind: str                                  # build | nightly | promote | debug-build | maintenance | seed
    summary: str
    agent_label: str
    package: Optional[str] = None
    spec_hash: str = ""
    spec_path: str = ""
    parameters: List[Param] = field(default_factory=list)
    context: List[Param] = field(default_factory=list)        # provided by Jenkins itself, validated too
    cron: Optional[str] = None
    poll_scm: Optional[str] = None
    timeout_minutes: int = 60
    keep_builds: int = 30
    disable_concurrent: bool = False
    environment: List[Tuple[str, str]] = field(default_factory=list)
    stages: List[Stage] = field(default_factory=list)
    junit: Optional[str] = None
    archive: Optional[str] = None
    build_user: bool = False                  # wrap steps in the build-user-vars wrapper (BUILD_USER_ID)
    allowed_groups: List[str] = field(default_factory=list)
    scm: Optional[Scm] = None                  # load the Jenkinsfile from the repository (CpsScmFlowDefinition)

    @property
    def full_name(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def description(self) -> str:
        origin = f" from {self.spec_path}" if self.spec_path else ""
        return (f"{self.summary}\n\nGenerated by relman{origin}; changes made here are overwritten by "
                f"`relman jobs sync`.\n{marker_line(self.full_name, self.spec_hash)}")


@dataclass
class Folder:
    name: str
    package: str
    spec_hash: str
    spec_path: str

    @property
    def full_name(self) -> str:
        return self.name

    @property
    def description(self) -> str:
        return (f"Jobs of the package {self.package}, generated by relman from {self.spec_path}.\n"
                f"{marker_line(self.name, self.spec_hash)}")


@dataclass
class JobSet:
    folders: List[Folder]
    jobs: List[Job]
    registry: str
    namespace: str
    script_mode: str

    def get(self, full_name: str) -> Job:
        for j in self.jobs:
            if j.full_name == full_name:
                return j
        raise UsageError(f"no job named {full_name!r}; known: {', '.join(j.full_name for j in self.jobs)}")

    def only(self, package: Optional[str]) -> "JobSet":
        if package is None:
            return self
        if not any(f.package == package for f in self.folders):
            raise UsageError(f"no package named {package!r}; known: {', '.join(f.package for f in self.folders)}")
        return JobSet([f for f in self.folders if f.package == package],
                      [j for j in self.jobs if j.package == package],
                      self.registry, self.namespace, self.script_mode)


def marker_line(full_name: str, spec_hash: str) -> str:
    return f"[{MARKER} job={full_name} spec-hash={spec_hash or '-'}]"


def has_marker(text: Optional[str]) -> bool:
    return bool(text) and f"[{MARKER} " in (text or "")


def marker_job(text: Optional[str]) -> Optional[str]:
    """The job a description's marker names (a job copied in Jenkins carries its original's marker)."""
    m = re.search(rf"\[{MARKER} job=(\S+) ", text or "")
    return m.group(1) if m else None


# ---------------------------------------------------------------- building the model

def _registry_cred(opts: JenkinsOptions) -> Credential:
    return Credential("usernamePassword", opts.registry_credentials_id,
                      (("usernameVariable", "RELMAN_REGISTRY_USER"), ("passwordVariable", "RELMAN_REGISTRY_PASSWORD")))


def _db_creds(opts: JenkinsOptions) -> Tuple[Credential, ...]:
    if not opts.db_credentials_id:
        return ()
    return (Credential("string", opts.db_credentials_id, (("variable", "RELMAN_DB_URL"),)),)


def _prepare(full_name: str) -> Stage:
    return Stage("Prepare", f"relman pipeline prepare {full_name}")


def _check_mode(mode: str) -> str:
    if mode not in ("inline", "scm"):
        raise UsageError(f"RELMAN_JENKINS_SCRIPT_MODE={mode!r}: expected 'inline' or 'scm'")
    return mode


def build_jobs(specs: SpecSet, settings, opts: Optional[JenkinsOptions] = None) -> JobSet:
    """Every folder and job for the loaded specs, plus the seed job."""
    from release_manager.plan import make_plan, platform_for
    from release_manager.tags import repository

    opts = opts or JenkinsOptions()
    mode = _check_mode(settings.jenkins_script_mode)
    folders: List[Folder] = []
    jobs: List[Job] = []
    for name in sorted(specs.packages):
        # a platform override (RELMAN_PLATFORM_OVERRIDES) picks the builders of the platform really built
        # on, and is passed to the jobs in plain sight
        plan = make_plan(specs, name, platform_for(settings, specs, name))
        spec = plan.spec
        js = spec.jenkins
        override = ([("RELMAN_PLATFORM_OVERRIDES", f"{plan.production_platform}={plan.platform_name}")]
                    if plan.platform_override else [])
        common = dict(folder=name, package=name, spec_hash=plan.spec_hash, spec_path=plan.spec_path,
                      agent_label=plan.platform.builder_label, keep_builds=js.keep_builds,
                      environment=override + [("RELMAN_REGISTRY", settings.registry), ("RELMAN_NAMESPACE", settings.namespace),
                                   ("RELMAN_JOB_SPEC_HASH", plan.spec_hash)])
        folders.append(Folder(name, name, plan.spec_hash, plan.spec_path))
        repo = repository(settings.registry, settings.namespace, name)
        push = (_registry_cred(opts),)
        results = f"{RESULTS_DIR}/*.json"
        ref_param = Param("REF", f"tag, branch or commit of {spec.source.git if not spec.source.git.startswith('<') else name} "
                                 f"(release tags match {spec.source.tag_pattern})",
                          "build-ref", default=spec.source.default_branch)

        for t in plan.targets:
            jname = f"build-{t.name}"
            full = f"{name}/{jname}"
            result = f"{RESULTS_DIR}/build-{t.name}.json"
            stages = [_prepare(full),
                      Stage("Build", f'relman build {name} --ref "$REF" --variant {t.name} --push --json > {result}',
                            push),
                      Stage("Record", f"relman db record-build {result}", _db_creds(opts))]
            if spec.verification is not None and t.component is None and t.variant in VERIFIED_VARIANTS:
                stages.append(Stage("Verify", f'relman verify {name} --image "$RELMAN_REGISTRY/$RELMAN_NAMESPACE/'
                                              f'{name}:$REF-{t.image_suffix}" --report {REPORTS_DIR}/verify-{t.name}'))
            what = f"component {t.component.name}" if t.component else f"{t.variant} variant"
            jobs.append(Job(name=jname, kind="build", summary=f"Build, push, record and verify the {what} of "
                            f"{name} ({repo}:<REF>-{t.image_suffix}).",
                            parameters=[ref_param], timeout_minutes=js.build_timeout_minutes,
                            disable_concurrent=True, stages=stages,
                            junit=f"{REPORTS_DIR}/**/*.xml", archive=f"{results},{REPORTS_DIR}/**/*.html", **common))

        if js.nightly is not None:
            full = f"{name}/nightly"
            jobs.append(Job(name="nightly", kind="nightly",
                            summary=f"Nightly build of {name} ({', '.join(js.nightly.variants)}) from "
                                    f"{spec.source.default_branch}: dated tags, aliases moved after verification.",
                            cron=js.nightly.cron, disable_concurrent=True,
                            timeout_minutes=js.build_timeout_minutes * max(1, len(js.nightly.variants)),
                            stages=[_prepare(full), Stage("Nightly", f"relman nightly {name}", push + _db_creds(opts))],
                            junit=f"{REPORTS_DIR}/**/*.xml", archive=f"{results},{REPORTS_DIR}/**/*.html", **common))

        full = f"{name}/promote"
        promote_params = [Param("TAG", "existing image tag to promote, e.g. v1.1.0-runtime", "tag"),
                          Param("TARGET", "tag to point at it, e.g. stable-runtime", "tag"),
                          Param("REASON", "why: recorded with the promotion", "reason")]
        channel_opt = ""
        if spec.channels:   # the moving tags pipelines run from (e.g. L1's l1): empty moves none
            promote_params.append(Param("CHANNEL", "channel to move to the promoted image, or empty: "
                                        + ", ".join(sorted(spec.channels)), "channel", required=False))
            channel_opt = ' --channel "$CHANNEL"'
        jobs.append(Job(name="promote", kind="promote",
                        summary=f"Promote an image of {name} to a target tag (release managers: "
                                f"{', '.join(js.promote_by)}).",
                        parameters=promote_params,
                        context=[Param("BUILD_USER_ID", "the Jenkins user running the job (build-user-vars plugin)",
                                       "requester")],
                        build_user=True, allowed_groups=list(js.promote_by), disable_concurrent=True,
                        timeout_minutes=PROMOTE_TIMEOUT_MINUTES,
                        stages=[_prepare(full),
                                Stage("Promote", f'relman promote {name} "$TAG" --to "$TARGET"{channel_opt} '
                                                 f'--by "$BUILD_USER_ID" --reason "$REASON"', push + _db_creds(opts))],
                        archive=results, **common))

        if "debug" in spec.variants:
            full = f"{name}/debug-build"
            jobs.append(Job(name="debug-build", kind="debug-build",
                            summary=f"On-demand debug image of {name} at any ref "
                                    f"({repo}:dev-<REQUESTER>-<REF>-debug).",
                            parameters=[Param("REF", "tag, branch or commit to build", "ref",
                                              default=spec.source.default_branch),
                                        Param("REQUESTER", "user name the image is tagged for", "requester")],
                            build_user=True, allowed_groups=list(js.debug_build_by),
                            timeout_minutes=js.build_timeout_minutes,
                            stages=[_prepare(full),
                                    Stage("Debug build", f'relman debug-build {name} --ref "$REF" '
                                                         f'--requester "$REQUESTER"', push + _db_creds(opts))],
                            archive=results, **common))

        # retention and the registry/database check, daily: what `relman gc` and `relman reconcile` do by hand
        full = f"{name}/maintenance"
        jobs.append(Job(name="maintenance", kind="maintenance",
                        summary=f"Daily retention of {name}'s images (relman gc) and a check that the release "
                                "database and the registry agree (relman reconcile; the job fails while they differ).",
                        cron=MAINTENANCE_CRON, disable_concurrent=True, timeout_minutes=MAINTENANCE_TIMEOUT_MINUTES,
                        stages=[_prepare(full),
                                Stage("Garbage collection", f"relman gc --package {name}", push + _db_creds(opts)),
                                # the board of all packages, before Reconcile so that a failing check still
                                # leaves it archived; it reads the specs and the database only
                                Stage("Status board", f"relman status --html {STATUS_SITE_DIR}", _db_creds(opts)),
                                Stage("Reconcile", f"relman reconcile --package {name}", push + _db_creds(opts))],
                        archive=f"{results},{STATUS_SITE_DIR}/**", **common))

    jobs.append(seed_job(settings, opts))
    if mode == "scm":
        for j in jobs:
            if j.scm is None:
                j.scm = Scm(settings.jenkins_scm_url, opts.scm_branch, f"{opts.scm_script_root}/{j.full_name}/Jenkinsfile")
    return JobSet(folders, jobs, settings.registry, settings.namespace, mode)


def seed_job(settings, opts: JenkinsOptions) -> Job:
    """The root Jenkinsfile: regenerates every job from the Release Manager repository."""
    api = Credential("usernamePassword", opts.api_credentials_id,
                     (("usernameVariable", "RELMAN_JENKINS_USER"), ("passwordVariable", "RELMAN_JENKINS_TOKEN")))
    relman = ".relman-venv/bin/relman"
    return Job(folder=None, name=SEED_JOB, kind="seed", agent_label=opts.seed_label,
               summary="Seed job: checks the image specs and regenerates every relman job from them.",
               poll_scm=opts.seed_poll, disable_concurrent=True, timeout_minutes=30, keep_builds=30,
               stages=[Stage("Checkout", kind="checkout"),
                       Stage("Install", "python3 -m venv .relman-venv && .relman-venv/bin/pip install --quiet ."),
                       Stage("Check specs", f"{relman} specs check --specs-dir image_specs"),
                       Stage("Sync jobs", f"{relman} jobs sync --prune --specs-dir image_specs", (api,))],
               scm=Scm(settings.jenkins_scm_url, opts.scm_branch, "Jenkinsfile"))
