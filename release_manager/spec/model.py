"""Pydantic models of platforms.yaml and the per-package specs.

Every model forbids unknown keys: a typo must not pass silently. Values that cannot be
known here (internal URLs, exact digests) are written as visible placeholders,
`<placeholder: what to put here>`; `relman specs check` lists them and `relman build`
refuses to use them.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import re
from typing import Annotated, Dict, List, Literal, Optional, Tuple, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

VARIANTS = ("full", "runtime", "debug", "env")
PLACEHOLDER_RE = re.compile(r"^<placeholder: [^<>\n]+>\Z")
# One path component of an OCI repository name; also safe unquoted in a shell.
NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
OS_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_:~=*-]*\Z")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*\Z")
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def is_placeholder(value) -> bool:
    return isinstance(value, str) and bool(PLACEHOLDER_RE.match(value))


def _name(v: str) -> str:
    if not NAME_RE.match(v) or len(v) > 64:
        raise ValueError(f"{v!r} is not a valid name: lowercase letters, digits, and single '.', '_' or '-' "
                         "between them, at most 64 characters (it becomes part of an image name and a shell word)")
    return v


def _one_line(v: str) -> str:
    if "\n" in v or "\r" in v or "\0" in v:
        raise ValueError(f"{v!r} must be a single line")
    if not v.strip():
        raise ValueError("must not be empty")
    return v


def _abs_path(v: str, glob: bool = False) -> str:
    _one_line(v)
    chars = r"^[A-Za-z0-9_./+*-]+\Z" if glob else r"^[A-Za-z0-9_./+-]+\Z"
    if not v.startswith("/") or ".." in v.split("/") or not re.match(chars, v):
        raise ValueError(f"{v!r} must be an absolute path of letters, digits and ._+-/{'*' if glob else ''} "
                         "without '..'")
    return v.rstrip("/") or "/"


def _rel_path(v: str) -> str:
    _one_line(v)
    if v.startswith("/") or ".." in v.split("/") or not re.match(r"^[A-Za-z0-9_./*+-]+\Z", v):
        raise ValueError(f"{v!r} must be a relative path (letters, digits, ._*+-/) without '..'")
    return v


def _url_or_placeholder(v: str) -> str:
    _one_line(v)
    if is_placeholder(v):
        return v
    if not re.match(r"^(https?|git|ssh|file)://\S+\Z|^[\w.-]+@[\w.-]+:\S+\Z|^\{data_dir\}/\S+\Z", v):
        raise ValueError(f"{v!r} is not a URL (http(s)://, git://, ssh://, file://, user@host:path, "
                         "{data_dir}/path) nor a '<placeholder: ...>'")
    return v


def _digest_or_placeholder(v: str) -> str:
    if is_placeholder(v) or DIGEST_RE.match(v):
        return v
    raise ValueError(f"{v!r} is not a digest 'sha256:<64 hex digits>' nor a '<placeholder: ...>'")


def _sha256_or_placeholder(v: str) -> str:
    if is_placeholder(v) or re.match(r"^[0-9a-f]{64}\Z", v):
        return v
    raise ValueError(f"{v!r} is not 64 hex digits nor a '<placeholder: ...>'")


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"{v!r} is not a valid regular expression: {exc}") from None
    return v


def _os_package(v: str) -> str:
    # a placeholder stands for a package whose name on that platform family is not known here
    if not OS_PACKAGE_RE.match(v) and not is_placeholder(v):
        raise ValueError(f"{v!r} is not an OS package name (letters, digits, .+_:~=*-) nor a '<placeholder: ...>'")
    return v


def parse_size(v) -> int:
    """'1.5GB', '800 MiB' -> bytes."""
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError(f"{v!r} is not a size such as '800MB' or '1.5GiB'")
    if isinstance(v, int):
        return v
    m = SIZE_RE.match(v)
    if not m:
        raise ValueError(f"{v!r} is not a size: a number and a unit, one of {', '.join(SIZE_UNITS)} "
                         "(e.g. '800MB', '1.5GiB')")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2)])


Name = Annotated[str, AfterValidator(_name)]
OneLine = Annotated[str, AfterValidator(_one_line)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]
AbsGlob = Annotated[str, AfterValidator(lambda v: _abs_path(v, glob=True))]
RelPath = Annotated[str, AfterValidator(_rel_path)]
UrlOrPlaceholder = Annotated[str, AfterValidator(_url_or_placeholder)]
DigestOrPlaceholder = Annotated[str, AfterValidator(_digest_or_placeholder)]
Sha256OrPlaceholder = Annotated[str, AfterValidator(_sha256_or_placeholder)]
Regex = Annotated[str, AfterValidator(_regex)]
OsPackage = Annotated[str, AfterValidator(_os_package)]
Variant = Literal["full", "runtime", "debug", "env"]
NIGHTLY_VARIANTS: Tuple[Variant, ...] = ("runtime", "debug", "full")


class Strict(BaseModel):
    # strict: a YAML 1 must not become the string "1" silently, nor "yes" a bool.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------- platforms.yaml

class BaseImage(Strict):
    name: OneLine = Field(description="repository of the base image, e.g. docker.io/library/centos")
    tag: OneLine
    digest: Optional[DigestOrPlaceholder] = Field(None, description="pinned manifest digest")
    local: bool = Field(False, description="made on the builder (scripts/local-stack); digest read at build time")

    @model_validator(mode="after")
    def _pinned(self):
        if not self.local and self.digest is None:
            raise ValueError("a base image from a registry must be pinned by 'digest' "
                             "(or a '<placeholder: ...>' until it is known)")
        return self

    @property
    def reference(self) -> str:
        ref = f"{self.name}:{self.tag}"
        # an unpinned (placeholder) digest renders as the tag alone; `relman build` refuses it
        return f"{ref}@{self.digest}" if self.digest and not is_placeholder(self.digest) else ref


class YumRepo(Strict):
    id: Name
    name: OneLine
    baseurl: UrlOrPlaceholder
    gpgcheck: bool = True
    gpgkey: Optional[OneLine] = None
    enabled: bool = True


class Repositories(Strict):
    remove: List[AbsGlob] = Field(default_factory=list, description="stock repo files to delete (globs)")
    yum: List[YumRepo] = Field(default_factory=list, description="repos written to /etc/yum.repos.d/relman.repo")
    apt_sources: List[OneLine] = Field(default_factory=list, description="deb lines for sources.list")


class Platform(Strict):
    description: OneLine
    os: OneLine = Field(description="distribution and release, e.g. 'CentOS 6.10'")
    base_image: BaseImage
    package_manager: Literal["yum", "apt"]
    end_of_life: bool = False
    repositories: Repositories = Repositories()
    builder_label: Name = Field(description="Jenkins agent label of the builders for this platform")
    compiler: OneLine = Field(description="system compiler, informative (e.g. gcc 4.4)")
    toolchain_packages: List[OsPackage] = Field(description="compiler, make, binutils (objcopy) for the build stage")
    debugger_packages: List[OsPackage] = Field(description="installed in the debug image")
    developer_packages: List[OsPackage] = Field(default_factory=list,
                                                description="debugger and tools for developers in the env and full images")
    user: Name = "sas"
    uid: int = Field(1000, ge=1, le=65533)


class PlatformsFile(Strict):
    platforms: Dict[Name, Platform]

    @field_validator("platforms")
    @classmethod
    def _non_empty(cls, v):
        if not v:
            raise ValueError("at least one platform is required")
        return v


# ---------------------------------------------------------------- package specs

def _without_empty(dumped: dict, key: str) -> dict:
    """A newer optional field left out of a dump when unset, so older specs hash as before."""
    if dumped.get(key) in (None, [], {}):
        dumped.pop(key, None)
    return dumped


def _no_repeats(v: List[str]) -> List[str]:
    twice = sorted({x for x in v if v.count(x) > 1})
    if twice:
        raise ValueError(f"listed twice: {', '.join(twice)}")
    return v


class Source(Strict):
    git: UrlOrPlaceholder = Field(description="git URL or local path of the package repository")
    tag_pattern: Regex = Field(description="regular expression release tags match")
    default_branch: OneLine = "master"
    submodules: Annotated[List[RelPath], AfterValidator(_no_repeats)] = Field(
        default_factory=list, description="paths of the git submodules the build needs, at the commits the "
                                          "repository pins; others stay empty")


class FamilyPackages(Strict):
    build: List[OsPackage] = Field(default_factory=list)
    runtime: List[OsPackage] = Field(default_factory=list)
    runtime_extra: List[OsPackage] = Field(
        default_factory=list, description="installed in a layer of their own after `runtime` (and the user): "
                                          "images whose `runtime` lists are equal share those layers")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # left out when empty: specs without it keep their hashes (and their images' spec labels)
        return _without_empty(handler(self), "runtime_extra")


class OsPackages(Strict):
    """Packages for every platform, plus per package-manager family (names differ: Debian vs RPM)."""
    build: List[OsPackage] = Field(default_factory=list)
    runtime: List[OsPackage] = Field(default_factory=list)
    apt: FamilyPackages = FamilyPackages()
    yum: FamilyPackages = FamilyPackages()

    def for_manager(self, manager: str) -> FamilyPackages:
        fam: FamilyPackages = getattr(self, manager)
        return FamilyPackages(build=self.build + fam.build, runtime=self.runtime + fam.runtime,
                              runtime_extra=fam.runtime_extra)


class Layers(Strict):
    """Sources copied and built one part at a time: the engine's layer cache then rebuilds only the part
    that changed and those after it (a compiler cache cannot persist with the legacy builder)."""
    paths: List[RelPath] = Field(min_length=1, description="source subtrees, in build (dependency) order")
    steps: List[OneLine] = Field(min_length=1, description="run after each part is copied in; RELMAN_LAYER "
                                                           "names the part")

    @field_validator("paths")
    @classmethod
    def _apart(cls, v):
        _no_repeats(v)
        for a in v:
            for b in v:
                if a != b and b.startswith(a.rstrip("/") + "/"):
                    raise ValueError(f"{b!r} lies inside {a!r}: the parts must not overlap")
        return v


class Build(Strict):
    steps: List[OneLine] = Field(min_length=1, description="shell commands run in the source tree, in order "
                                                           "(after the layers, when there are layers)")
    files: Optional[Union[RelPath, List[RelPath]]] = Field(
        None, description="folder(s) of support files (relative to the spec's folder), copied to $RELMAN_FILES "
                          "before the sources; several folders are merged (a file name in two is an error)")
    layers: Optional[Layers] = None
    env: Dict[str, OneLine] = Field(default_factory=dict, description="environment of the build steps only")
    cflags: OneLine = Field("-g -O2", description="always carries -g: debug info is split out later")

    @field_validator("env")
    @classmethod
    def _env_keys(cls, v):
        for k in v:
            if not ENV_KEY_RE.match(k):
                raise ValueError(f"{k!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        return v

    @field_validator("cflags")
    @classmethod
    def _has_g(cls, v):
        if "-g" not in v.split():
            raise ValueError(f"{v!r} lacks -g: the debug variant needs debug info to split out")
        return v


class DataItem(Strict):
    name: Name
    description: OneLine
    url: Optional[UrlOrPlaceholder] = Field(None, description="downloaded at build time")
    from_source: Optional[RelPath] = Field(None, description="path in the source tree")
    dest: AbsPath
    sha256: Optional[Sha256OrPlaceholder] = None

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.url is None) == (self.from_source is None):
            raise ValueError("give exactly one of 'url' or 'from_source'")
        if self.url is not None and self.sha256 is None:
            raise ValueError("a downloaded data item needs 'sha256' (or a '<placeholder: ...>')")
        return self


class SizeBudget(Strict):
    max: Annotated[int, Field(gt=0)]
    on_exceed: Literal["warn", "fail"] = "warn"
    # the size aimed at, below max: a build over it passes with a warning that says by how much
    target: Optional[Annotated[int, Field(gt=0)]] = None

    @field_validator("max", "target", mode="before")
    @classmethod
    def _size(cls, v):
        return None if v is None else parse_size(v)

    @model_validator(mode="after")
    def _target_below_max(self):
        if self.target is not None and self.target > self.max:
            raise ValueError(f"target ({self.target} bytes) is above max ({self.max} bytes)")
        return self


# names a channel's tag may not take: the other tag kinds of release_manager/tags.py
CHANNEL_RESERVED = ("nightly", "release-", "bk-", "dev-")


def _channel_name(v: str) -> str:
    if not re.match(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z", v) or len(v) > 40:
        raise ValueError(f"{v!r} is not a channel name (lowercase letters and digits joined by '-', at most 40)")
    if v.startswith(CHANNEL_RESERVED):
        raise ValueError(f"{v!r} starts like another kind of tag ({', '.join(CHANNEL_RESERVED)})")
    return v


class Channel(Strict):
    """A moving tag a pipeline runs from (L1's makeFT1 step runs `l1-makeft1:l1`). `relman promote ...
    --channel NAME` points it at a verified, promoted image of `variant`; every move is recorded."""
    variant: Name = "runtime"                # a variant or a component name
    description: OneLine


def _git_ref(v: str) -> str:
    from release_manager import validate
    from release_manager.errors import UsageError
    try:
        return validate.ref(v)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


class Extends(Strict):
    """Built on another package's images (L1 on ScienceTools): the build stage starts from that package's full
    image at `ref` (its build tree and install prefix: only this spec's own layers are built), and the runtime
    image is that package's runtime image plus this spec's runtime_extra packages and what its build added to
    the prefix, so every layer of the other runtime image is shared. The submodules both umbrellas have must
    be pinned at the same commits (relman build checks)."""
    package: Name
    ref: Annotated[str, AfterValidator(_git_ref)]


class Component(Strict):
    name: Name
    description: OneLine
    paths: List[RelPath] = Field(min_length=1, description="paths under the prefix the component keeps")
    runtime_packages: List[OsPackage] = Field(default_factory=list, description="OS packages beyond the base")
    size_budget: Optional[SizeBudget] = None


class Tolerance(Strict):
    """Row-by-row float tolerance. A pair passes when it is within `ulps` units in the last place (zeros
    and denormals all equal), or within atol + rtol*|ref|. Nothing set: bit-exact (up to +0/-0)."""
    rtol: float = Field(0.0, ge=0)
    atol: float = Field(0.0, ge=0)
    ulps: Optional[int] = Field(None, ge=0, le=1 << 20, description="units in the last place of the column's type")


class ColumnRule(Strict):
    test: Literal["exact", "tolerance", "ks", "chi2", "ignore"]
    rtol: Optional[float] = Field(None, ge=0)
    atol: Optional[float] = Field(None, ge=0, description="in the column's own unit (TIME in s, angles in deg)")
    ulps: Optional[int] = Field(None, ge=0, le=1 << 20)
    bins: Optional[int] = Field(None, gt=1)
    warn_below: float = Field(0.05, gt=0, lt=1, description="p-value under which the grade is 'warning'")
    fail_below: float = Field(0.01, gt=0, lt=1, description="p-value under which the grade is 'bad'")

    @model_validator(mode="after")
    def _ordered(self):
        if self.fail_below > self.warn_below:
            raise ValueError("fail_below must not exceed warn_below")
        return self


class CompareRule(Strict):
    pattern: OneLine = Field(description="glob matched against output file paths")
    comparator: Literal["fits", "root", "text", "bytes"]
    mode: Literal["reproducible", "statistical"] = Field(
        "reproducible", description="reproducible: a deterministic rerun, compared row by row; statistical: a "
        "rerun with other random seeds, compared as distributions with a family-wise false-alarm rate")
    family_alpha: float = Field(0.01, gt=0, lt=0.5, description="statistical mode: family-wise false-alarm rate "
                                "of all the tests of one file (Holm)")
    family_warn: float = Field(0.05, gt=0, lt=0.5, description="statistical mode: warning level (Holm)")
    profile: Optional[Literal["ft1", "ft2", "merit"]] = Field(
        None, description="documented per-column tolerances for LAT products (release_manager/verify/lat_columns.py)")
    history: Literal["masked", "exact", "ignore"] = Field(
        "masked", description="FITS HISTORY/COMMENT: folders, dates and times masked; verbatim; or not compared")
    ignore_keywords: Optional[List[OneLine]] = None
    key_columns: List[OneLine] = Field(default_factory=list)
    # nothing said about floats: a few ULPs of the column's type (release_manager/verify/lat_columns.py)
    floats: Tolerance = Field(default_factory=lambda: Tolerance(ulps=4))
    columns: Dict[str, ColumnRule] = Field(default_factory=dict)
    mask_patterns: List[Regex] = Field(default_factory=list, description="text: regexes masked before diffing")
    min_entries: int = Field(20, ge=0, description="histograms: chi2 guard")
    min_expected: float = Field(5.0, gt=0, description="chi2: minimum expected count per bin (rarer bins pooled)")

    @field_validator("pattern")
    @classmethod
    def _glob(cls, v):
        fnmatch.translate(v)
        return v

    @model_validator(mode="after")
    def _levels(self):
        if self.family_alpha > self.family_warn:
            raise ValueError(f"family_alpha ({self.family_alpha}) must not exceed family_warn ({self.family_warn})")
        return self


class KnownDifference(Strict):
    file: OneLine
    column: Optional[OneLine] = None
    reason: OneLine
    expires: dt.date

    @field_validator("expires", mode="before")
    @classmethod
    def _date(cls, v):
        # YAML gives a date for 2027-01-31; accept the ISO string too.
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a date YYYY-MM-DD") from None
        return v


class WorkloadStep(Strict):
    name: Name
    command: List[OneLine] = Field(min_length=1, description="argv, run without a shell")


class Reference(Strict):
    kind: Literal["stored", "rerun"]
    path: Optional[OneLine] = Field(None, description="stored: folder of reference outputs")
    environment: Optional[Literal["host", "image"]] = None
    image: Optional[OneLine] = Field(None, description="rerun in image: reference image reference")
    host_prefix: Optional[OneLine] = Field(None, description="rerun on host: install prefix of the bare-metal build")
    host_ref: Optional[OneLine] = Field(None, description="rerun on host: relman builds the reference itself "
                                                          "(`relman host-build`, the image's recipe) from this ref, "
                                                          "a trusted release, and reuses it while it is unchanged")

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "stored" and not self.path:
            raise ValueError("a stored reference needs 'path'")
        if self.kind == "rerun" and not self.environment:
            raise ValueError("a rerun reference needs 'environment' (host or image)")
        return self


class RequiredArguments(Strict):
    """Parameters without which a program's products are not reproducible: a workload step that runs the
    program without all of them is refused when the spec is read."""
    program: OneLine = Field(description="argv[0] of the workload steps concerned (its base name)")
    arguments: List[OneLine] = Field(min_length=1, description="parameter names each step must give as name=value")
    keywords: List[OneLine] = Field(min_length=1, description="what is not reproducible without them (the "
                                                              "products' keywords), named in the refusal")


class Determinism(Strict):
    """Run the workload more than once in the same image and flag products that differ between the runs
    (before comparing image and reference): a rule cannot be trusted on a product that is not reproducible."""
    runs: int = Field(2, ge=2, le=5, description="runs of the whole workload in the image")
    require_arguments: List[RequiredArguments] = Field(default_factory=list)


class Verification(Strict):
    inputs: Dict[Name, OneLine] = Field(default_factory=dict, description="name -> file, mounted at /inputs/<name>")
    workload: List[WorkloadStep] = Field(min_length=1)
    outputs: List[RelPath] = Field(min_length=1, description="globs under /outputs that are compared")
    reference: Reference
    rules: List[CompareRule] = Field(min_length=1)
    known_differences: List[KnownDifference] = Field(default_factory=list)
    determinism: Optional[Determinism] = None

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return _without_empty(handler(self), "determinism")

    @model_validator(mode="after")
    def _reproducible(self):
        problems = []
        for req in (self.determinism.require_arguments if self.determinism else []):
            for st in self.workload:
                if st.command[0].rsplit("/", 1)[-1] != req.program:
                    continue
                given = {a.split("=", 1)[0] for a in st.command[1:] if "=" in a}
                missing = [a for a in req.arguments if a not in given]
                if missing:
                    problems.append(f"step {st.name!r} runs {req.program} without {', '.join(missing)}")
        if problems:
            req_kw = sorted({k for r in self.determinism.require_arguments for k in r.keywords})
            raise ValueError("refused, the products would not be reproducible: " + "; ".join(problems)
                             + f" (then {', '.join(req_kw)} differ from run to run: give them as name=value)")
        return self


class NightlyJob(Strict):
    cron: OneLine = Field(description="Jenkins cron spec, e.g. 'H 2 * * *'")
    variants: List[Variant] = Field(default_factory=lambda: list(NIGHTLY_VARIANTS))

    @field_validator("cron")
    @classmethod
    def _cron(cls, v):
        if len(v.split()) != 5 or not re.match(r"^[0-9HhA-Za-z*/,\- ()]+\Z", v):
            raise ValueError(f"{v!r} is not a 5-field Jenkins cron spec (e.g. 'H 2 * * *')")
        return v


class JenkinsSection(Strict):
    nightly: Optional[NightlyJob] = None
    promote_by: List[Name] = Field(default_factory=lambda: ["release-managers"],
                                   description="Jenkins groups allowed to run the promote job")
    debug_build_by: List[Name] = Field(default_factory=lambda: ["developers"])
    build_timeout_minutes: int = Field(180, gt=0)
    keep_builds: int = Field(30, gt=0)


class GdbCheck(Strict):
    program: OneLine = Field(description="executable under <prefix>/bin that gdb loads")
    functions: List[OneLine] = Field(min_length=1, description="functions gdb must resolve to a source line; "
                                                               "one may live in a shared library")


class Checks(Strict):
    gdb: Optional[GdbCheck] = Field(None, description="debug image: default is main of the first program")


class Run(Strict):
    """What the uniform entrypoint (relman-entrypoint) offers and sets up in every image."""
    programs: List[Name] = Field(default_factory=list, description="what `--list` shows; default: <prefix>/bin")
    environment: Dict[str, OneLine] = Field(
        default_factory=dict, description="set at each run; {user_dir} is a writable folder of the calling user "
                                          "(made under $TMPDIR or /tmp), for a read-only image and no HOME")
    setup_script: Optional[AbsPath] = Field(None, description="sourced before the program runs (a set-up script)")

    @field_validator("environment")
    @classmethod
    def _env(cls, v):
        for k, val in v.items():
            if not ENV_KEY_RE.match(k):
                raise ValueError(f"{k!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            if re.search(r"[`$\\\"]", val.replace("{user_dir}", "")):
                raise ValueError(f"{k}: {val!r} must not contain $, `, \\ or \" (values are literal; "
                                 "{user_dir} is the one substitution)")
        return v


class PackageSpec(Strict):
    name: Name
    description: OneLine
    source: Source
    build_platform: Name
    run_platforms: List[Name] = Field(min_length=1)
    prefix: AbsPath
    os_packages: OsPackages = OsPackages()
    build: Build
    environment: Dict[str, OneLine] = Field(default_factory=dict)
    data: List[DataItem] = Field(default_factory=list)
    variants: List[Variant] = Field(min_length=1)
    size_budget: Dict[Variant, SizeBudget] = Field(default_factory=dict)
    components: List[Component] = Field(default_factory=list)
    run: Run = Run()
    checks: Checks = Checks()
    verification: Optional[Verification] = None
    jenkins: JenkinsSection = JenkinsSection()
    channels: Dict[Annotated[str, AfterValidator(_channel_name)], Channel] = Field(default_factory=dict)
    extends: Optional[Extends] = None
    notes: List[OneLine] = Field(default_factory=list, description="facts and their sources")

    @field_validator("environment")
    @classmethod
    def _env_keys(cls, v):
        return Build._env_keys(v)

    @model_validator(mode="after")
    def _cross(self):
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants: listed twice")
        if "debug" in self.variants and "runtime" not in self.variants:
            raise ValueError("variants: 'debug' is built on 'runtime', list both")
        for v in self.size_budget:
            if v not in self.variants:
                raise ValueError(f"size_budget: {v!r} is not one of this package's variants {self.variants}")
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError("components: a name is used twice")
        for name, ch in self.channels.items():
            if ch.variant not in self.variants and ch.variant not in names:
                raise ValueError(f"channels.{name}.variant: {ch.variant!r} is not one of this package's variants "
                                 f"or components {list(self.variants) + names}")
            if any(name.endswith(f"-{v}") for v in list(self.variants) + names):
                raise ValueError(f"channels: {name!r} ends like a release tag (<ref>-<variant>)")
        if self.extends:
            if self.extends.package == self.name:
                raise ValueError(f"extends.package: {self.name!r} cannot extend itself")
            if self.components or self.data:
                raise ValueError("extends: a spec built on another package's images has no components or data "
                                 "(its runtime image is that package's runtime image plus its own files)")
        if self.jenkins.nightly:
            for v in self.jenkins.nightly.variants:
                if v not in self.variants:
                    raise ValueError(f"jenkins.nightly.variants: {v!r} is not one of {self.variants}")
        return self

    def placeholders(self, manager: Optional[str] = None):
        """(field path, value) for every visible placeholder in the spec; with a package manager, only
        those a build with it uses (the other family's package names do not stop a build)."""
        found = list(_find_placeholders(self.model_dump(mode="json"), ()))
        if manager:
            other = {"apt": "yum", "yum": "apt"}[manager]
            found = [(p, v) for p, v in found if not p.startswith(f"os_packages.{other}.")]
        return found


def _find_placeholders(node, path):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _find_placeholders(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _find_placeholders(v, path + (i,))
    elif is_placeholder(node):
        yield ".".join(str(p) for p in path), node
