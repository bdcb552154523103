"""Spec -> image plan: every decision about what goes in which stage, made once, in Python.

Renderers (Dockerfile, Singularity definition, Jenkins jobs) and the builder read the plan;
none of them decides anything of its own.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from release_manager.spec.loader import LoadedSpec, SpecSet
from release_manager.spec.model import Component, PackageSpec, Platform
from release_manager.targets import KINDS, Kind

DEBUG_ROOT = "/usr/lib/debug"
SOURCE_ROOT = "/usr/src"
PAYLOAD_ROOT = "/relman-payload"
SUPPORT_DIR = ".relman"          # support files in the build context
LAYERS_DIR = "layers"            # build.layers parts in the build context (layers/<path>/)
HELPERS_IN_IMAGE = "/usr/local/libexec/relman"
FILES_IN_IMAGE = "/usr/src/relman-files"   # the spec's build.files ($RELMAN_FILES), beside the sources
ENTRYPOINT = "/usr/local/bin/relman-entrypoint"
# The image the debug stage extends: the runtime stage by default (a hand `docker build --target debug`);
# relman build passes the id of the runtime image it has just built or found, so that the debug image is
# that image plus one layer even when the engine's cache holds two chains of the same steps.
RUNTIME_IMAGE_ARG = "RELMAN_RUNTIME_IMAGE"
# The stage every image of a platform and runtime package list starts with (base image, runtime packages, user):
# `relman build` builds it once per engine, tags it (build.COMMON_REPOSITORY) and passes its id in this build
# argument, so images of different specs share those layers even after a cold build made another cached chain
# of the same steps (the classic builder takes the newest). A hand `docker build` builds the stage itself.
COMMON_IMAGE_ARG = "RELMAN_COMMON_IMAGE"
# A spec that extends another (L1 on ScienceTools): the images its build and runtime stages start from. relman
# build passes the ids of the other package's full and runtime images (built first when missing); a hand
# `docker build` takes the tags named by default (<package>:<ref>-full, <package>:<ref>-runtime).
UPSTREAM_FULL_ARG = "RELMAN_UPSTREAM_FULL"
UPSTREAM_RUNTIME_ARG = "RELMAN_UPSTREAM_RUNTIME"
# where the build stage of such a spec gathers what its build added to or changed in the prefix (the runtime
# image copies this folder, not the whole prefix, whose other files its runtime image has already)
PREFIX_DELTA_ROOT = "/relman-prefix"

# OCI annotations that carry per-build values: declared as ARGs so they are never silently empty.
# The spec hash and the description are per-build values too: a change of the cron, a note, a rule or a
# description must not rebuild an image (the build key is made only of what the build uses).
BUILD_ARGS = ("RELMAN_SOURCE", "RELMAN_VERSION", "RELMAN_REVISION", "RELMAN_REF_NAME", "RELMAN_CREATED",
              "RELMAN_BASE_DIGEST", "RELMAN_BUILD_KEY", "RELMAN_BUILDER_HOST", "RELMAN_BUILD_URL",
              "RELMAN_SPEC_HASH", "RELMAN_DESCRIPTION")


def install_command(manager: str, packages: List[str]) -> str:
    """One RUN's worth of package installation that leaves no package cache behind."""
    pkgs = " ".join(shlex.quote(p) for p in packages)
    if manager == "apt":
        return ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                f"--no-install-recommends {pkgs} && apt-get clean && rm -rf /var/lib/apt/lists/*")
    return f"yum -y install {pkgs} && yum clean all && rm -rf /var/cache/yum"


def package_query_command(manager: str) -> List[str]:
    """Lists installed OS packages as 'name<TAB>version<TAB>arch' lines."""
    if manager == "apt":
        return ["dpkg-query", "-W", "-f=${Package}\t${Version}\t${Architecture}\n"]
    return ["rpm", "-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n"]


@dataclass(frozen=True)
class Target:
    """One image the Dockerfile can produce."""
    name: str          # Dockerfile stage name (and --target)
    variant: str       # full | runtime | debug | env | component
    component: Optional[Component] = None

    @property
    def image_suffix(self) -> str:
        return self.variant if self.component is None else f"{self.component.name}"

    @property
    def kind(self) -> Kind:
        """The building block this target is (its stage, checks, build order, verification)."""
        return KINDS[self.variant]


@dataclass
class ImagePlan:
    spec: PackageSpec
    spec_hash: str
    spec_path: str
    platform_name: str
    platform: Platform
    targets: List[Target] = field(default_factory=list)
    files: Dict[str, str] = field(default_factory=dict)     # the spec's build.files
    production_platform: str = ""                           # the spec's build_platform
    upstream: Optional["ImagePlan"] = None                  # the plan of the package this one extends

    @property
    def platform_override(self) -> Optional[str]:
        """'rhel7->debian12-local' when built on another platform than the spec's, else None."""
        if self.production_platform and self.production_platform != self.platform_name:
            return f"{self.production_platform}->{self.platform_name}"
        return None

    @property
    def layers(self) -> List[Tuple[str, str]]:
        """(path in the source tree, folder in the build context) of each build.layers part, in order."""
        if not self.spec.build.layers:
            return []
        return [(p.rstrip("/"), f"{LAYERS_DIR}/{p.rstrip('/')}") for p in self.spec.build.layers.paths]

    @property
    def files_dir(self) -> Optional[str]:
        if self.upstream is not None and self.files:
            # the upstream's folder, where its build tree's CMake cache points (-I$RELMAN_FILES/include): the
            # same flags, so its packages' objects stay up to date (this spec's files are a superset of its)
            return self.upstream.files_dir or f"{FILES_IN_IMAGE}/{self.upstream.spec.name}"
        return f"{FILES_IN_IMAGE}/{self.spec.name}" if self.files else None

    @property
    def own_layers(self) -> List[Tuple[str, str]]:
        """The build.layers parts this build makes: all of them, or, when built on another package's full image,
        those after its layers (which that image has built already)."""
        if self.upstream is None:
            return self.layers
        done = {path for path, _ in self.upstream.layers}
        return [(path, folder) for path, folder in self.layers if path not in done]

    @property
    def build_dir(self) -> str:
        """The source tree the build runs in: its own, or the one of the package it extends (its build tree)."""
        return self.upstream.source_dir if self.upstream is not None else self.source_dir

    @property
    def upstream_defaults(self) -> Dict[str, str]:
        """What a hand `docker build` of an extending spec starts from (relman build passes image ids)."""
        if self.upstream is None or self.spec.extends is None:
            return {}
        ref = self.spec.extends.ref
        return {UPSTREAM_FULL_ARG: f"{self.upstream.name}:{ref}-full",
                UPSTREAM_RUNTIME_ARG: f"{self.upstream.name}:{ref}-runtime"}

    def placeholders(self):
        return self.spec.placeholders(self.manager)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def base_ref(self) -> str:
        return self.platform.base_image.reference

    @property
    def manager(self) -> str:
        return self.platform.package_manager

    @property
    def source_dir(self) -> str:
        return f"{SOURCE_ROOT}/{self.spec.name}"

    @property
    def yum_repo_file(self) -> Optional[str]:
        if self.manager != "yum" or not self.platform.repositories.yum:
            return None
        return "relman.repo"

    def install(self, packages: List[str]) -> str:
        return install_command(self.manager, packages)

    @property
    def build_packages(self) -> List[str]:
        return _unique(self.platform.toolchain_packages + self.platform.developer_packages
                       + self.spec.os_packages.for_manager(self.manager).build)

    @property
    def extra_build_packages(self) -> List[str]:
        """An extending spec's build packages that the full image it starts from does not have."""
        have = set(self.upstream.build_packages) if self.upstream is not None else set()
        return [p for p in self.build_packages if p not in have]

    @property
    def runtime_packages(self) -> List[str]:
        return _unique(self.spec.os_packages.for_manager(self.manager).runtime)

    @property
    def runtime_extra_packages(self) -> List[str]:
        """Installed in a layer of their own after the runtime packages and the user, so that the layers
        below are the same as those of images with the same runtime list (shared in a registry)."""
        return _unique(self.spec.os_packages.for_manager(self.manager).runtime_extra)

    @property
    def build_env(self) -> List[Tuple[str, str]]:
        flags = self.spec.build.cflags
        env = {"CFLAGS": flags, "CXXFLAGS": flags, "PREFIX": self.spec.prefix}
        if self.files_dir:
            env["RELMAN_FILES"] = self.files_dir
        env.update(self.spec.build.env)
        return sorted(env.items())

    @property
    def runtime_env(self) -> List[Tuple[str, str]]:
        return list(self.spec.environment.items())

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name or (t.component is None and t.variant == name):
                return t
        allowed = ", ".join(t.name for t in self.targets)
        from release_manager.errors import UsageError
        raise UsageError(f"{self.spec_path}: package {self.name!r} has no variant or component {name!r}; "
                         f"allowed: {allowed}")

    def static_labels(self, target: Target) -> List[Tuple[str, str]]:
        title = f"{self.name}-{target.image_suffix}"
        return [
            ("org.opencontainers.image.title", title),
            ("relman.package", self.name),
            ("relman.variant", target.variant),
            ("relman.platform", self.platform_name),
            ("relman.platform.production", self.production_platform or self.platform_name),
            ("relman.platform.override", self.platform_override or "none"),
        ] + ([("relman.component", target.component.name)] if target.component else [])

    @staticmethod
    def build_arg_labels() -> List[Tuple[str, str]]:
        return [
            ("org.opencontainers.image.source", "RELMAN_SOURCE"),
            ("org.opencontainers.image.version", "RELMAN_VERSION"),
            ("org.opencontainers.image.revision", "RELMAN_REVISION"),
            ("org.opencontainers.image.ref.name", "RELMAN_REF_NAME"),
            ("org.opencontainers.image.created", "RELMAN_CREATED"),
            ("org.opencontainers.image.base.digest", "RELMAN_BASE_DIGEST"),
            ("relman.build-key", "RELMAN_BUILD_KEY"),
            ("relman.builder-host", "RELMAN_BUILDER_HOST"),
            ("relman.build-url", "RELMAN_BUILD_URL"),
            ("relman.spec-hash", "RELMAN_SPEC_HASH"),
            ("org.opencontainers.image.description", "RELMAN_DESCRIPTION"),
        ]

    def component_copies(self, comp: Component) -> List[Tuple[str, str]]:
        out = []
        for p in comp.paths:
            src = f"{self.spec.prefix}/{p}"
            dest = src if "*" not in p else src.rsplit("/", 1)[0] + "/"
            out.append((src, dest))
        return out


def _unique(items: List[str]) -> List[str]:
    seen, out = set(), []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def platform_for(settings, specs: SpecSet, package: str, explicit: Optional[str] = None) -> Optional[str]:
    """The platform to build package on: --platform, else RELMAN_PLATFORM_OVERRIDES for the spec's
    build platform, else None (the spec's own)."""
    if explicit:
        return explicit
    return settings.platform_overrides.get(specs.get(package).spec.build_platform)


def make_plan(specs: SpecSet, name: str, platform: Optional[str] = None) -> ImagePlan:
    """platform: build on this platform instead of the spec's build_platform (an explicit override,
    e.g. the local Debian stand-in for rhel7); it is named in the image's labels and the database."""
    loaded: LoadedSpec = specs.get(name)
    spec = loaded.spec
    # The folder and file name only: rendered files must not depend on where the checkout lives.
    spec_path = f"{loaded.path.parent.name}/{loaded.path.name}"
    chosen = platform or spec.build_platform
    if chosen not in specs.platforms:
        from release_manager.errors import UsageError
        raise UsageError(f"platform override {chosen!r} for {name}: no such platform in image_specs/platforms.yaml; "
                         f"known: {', '.join(sorted(specs.platforms))}")
    plan = ImagePlan(spec=spec, spec_hash=loaded.hash, spec_path=spec_path,
                     platform_name=chosen, platform=specs.platforms[chosen], files=dict(loaded.files),
                     production_platform=spec.build_platform)
    if spec.extends is not None:
        if spec.extends.package not in specs.packages:
            from release_manager.errors import UsageError
            raise UsageError(f"{spec_path}: extends.package {spec.extends.package!r} is not among the specs loaded "
                             f"({', '.join(sorted(specs.packages))})")
        plan.upstream = make_plan(specs, spec.extends.package, chosen)
    # Each kind knows its place: runtime first, so building it never builds full or env, and debug
    # (FROM runtime, checked against runtime's layers) right after.
    plan.targets = sorted([Target(v, v) for v in spec.variants], key=lambda t: t.kind.order) + \
                   [Target(f"component-{c.name}", "component", c) for c in spec.components]
    return plan
