"""relman build: from a spec and a git ref to checked, labelled, optionally pushed images.

spec -> plan -> rendered files -> build key -> (skip | build -> check -> manifest -> size) -> push -> result JSON
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import docker.errors
import requests
import urllib3.exceptions

from release_manager import engine, tags
from release_manager.errors import BuildError, EngineLost, RegistryError, UsageError
from release_manager.plan import (COMMON_IMAGE_ARG, RUNTIME_IMAGE_ARG, UPSTREAM_FULL_ARG, UPSTREAM_RUNTIME_ARG,
                                  ImagePlan, Target, make_plan, package_query_command,
                                  platform_for)
from release_manager.registry import Registry, load_credentials
from release_manager.render import render_dockerfile, support_files
from release_manager.sources import Revision, SourceRepo, build_context, resolve_url
from release_manager.spec.model import is_placeholder

LOG_TAIL = 25
# the common stage's image of each platform and runtime package list on this engine, tagged by common_key
COMMON_REPOSITORY = "relman/common-layers"
Echo = Callable[[str], None]
# What the SDK raises when the engine's socket goes away (dockerd killed or restarted): not an APIError
# (an answer), but the connection itself failing, often in the middle of a streamed build or push.
ENGINE_GONE = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
               urllib3.exceptions.ProtocolError, ConnectionError)


def engine_lost(what: str, exc: BaseException, where: str = "") -> EngineLost:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return EngineLost(f"{what}: the Docker engine went away{' ' + where if where else ''} "
                      f"({exc.__class__.__name__}: {first}); nothing of this build was pushed or recorded as "
                      f"pushed. {engine.START_HINT[0].upper()}{engine.START_HINT[1:]}, then run the build again")


@dataclass
class BuildResult:
    package: str
    ref: str
    commit: str
    variant: str
    target: str
    build_key: str
    repository: str
    tags: List[str]
    status: str = "pending"                  # built | skipped | failed
    image_id: Optional[str] = None
    digest: Optional[str] = None
    pushed: bool = False
    size: Optional[int] = None
    layers: List[dict] = field(default_factory=list)
    labels: Dict[str, str] = field(default_factory=dict)
    base_digest: Optional[str] = None
    spec_hash: Optional[str] = None
    platform: Optional[str] = None              # built on
    production_platform: Optional[str] = None   # the spec's build_platform (differs under an override)
    manifest_file: Optional[str] = None
    checks: List[dict] = field(default_factory=list)
    size_budget: Optional[dict] = None
    started: Optional[str] = None
    finished: Optional[str] = None
    duration: Optional[float] = None
    message: str = ""
    builder_host: str = ""
    build_url: Optional[str] = None

    def as_dict(self):
        return dict(self.__dict__)


@dataclass(frozen=True)
class Upstream:
    """The package a spec extends, at its ref: the build keys of its runtime and full images."""
    package: str
    ref: str
    keys: Dict[str, str]

    @property
    def key_text(self) -> str:
        return f"{self.package}\0{self.ref}\0{self.keys['runtime']}\0{self.keys['full']}"


def build_key(dockerfile: str, support: Dict[str, str], revision: Revision, base_digest: str,
              target: Target, upstream: str = "") -> str:
    """What the target's image is made of, and only that, cheaply: the Dockerfile stages it is built from
    (comments left out), the support files they copy, the sources (the git tree id stands for every file
    and every submodule pin), the base image. Not the cron, notes, rules, Jenkins settings, builder
    label or descriptions: changing those rebuilds nothing. For a spec built on another package's images
    (extends), upstream names their build keys: a new ScienceTools image rebuilds L1 on it.

    The ref and version are in too: they are the image's provenance labels, so the same commit
    built for tag v1.1.0 and for a nightly of main gives two images (sharing every layer), each
    labelled truthfully, never one image whose labels name the other ref.
    """
    stages, copied = stage_closure(dockerfile, target.name)
    h = hashlib.sha256()
    for part in (stages, revision.tree, revision.commit, revision.ref, revision.version, revision.url, base_digest,
                 target.name):
        h.update(part.encode())
        h.update(b"\0")
    for sub in revision.submodules:   # the tree id covers the pins already; the URLs too, explicitly
        h.update(f"{sub.path}\0{sub.url}\0{sub.commit}\0".encode())
    _hash_support(h, support, copied)
    if upstream:
        h.update(f"upstream\0{upstream}\0".encode())
    return h.hexdigest()


def common_key(dockerfile: str, support: Dict[str, str], base_digest: str) -> str:
    """The common stage's identity (plan.COMMON_IMAGE_ARG): its instructions, the support files it copies, the
    base image. Equal for every spec of the same platform and runtime package list: they share its image."""
    text, copied = stage_closure(dockerfile, "common")
    h = hashlib.sha256(f"{text}\0{base_digest}\0".encode())
    _hash_support(h, support, copied)
    return h.hexdigest()


def _hash_support(h, support: Dict[str, str], copied: List[str]) -> None:
    for rel in sorted(support):
        if any(rel == c.rstrip("/") or rel.startswith(c.rstrip("/") + "/") for c in copied):
            h.update(rel.encode() + b"\0" + support[rel].encode() + b"\0")


def stage_closure(dockerfile: str, target: str) -> Tuple[str, List[str]]:
    """The text a target's image is made from: its stage and every stage it builds on (FROM) or copies
    from (COPY --from), comments left out (they build nothing); and the context paths those stages COPY."""
    stages: Dict[str, List[str]] = {}
    order: List[str] = []
    current = None
    global_args: Dict[str, str] = {}   # ARG NAME=default before the first FROM: usable in FROM lines
    for line in dockerfile.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = line.split()
        if current is None and words[0].upper() == "ARG" and len(words) == 2 and "=" in words[1]:
            name, _, default = words[1].partition("=")
            global_args[name] = default
        if words[0].upper() == "FROM":
            current = words[3] if len(words) >= 4 and words[2].upper() == "AS" else f"#{len(order)}"
            order.append(current)
            stages[current] = []
        if current is not None:
            stages[current].append(line)
    needed, todo = set(), [target]
    while todo:
        name = todo.pop()
        if name in needed or name not in stages:
            continue
        needed.add(name)
        for line in stages[name]:
            words = line.split()
            if words[0].upper() == "FROM":   # a stage named by its default (debug: FROM ${RELMAN_RUNTIME_IMAGE})
                base = words[1]
                for arg, default in global_args.items():
                    base = base.replace("${" + arg + "}", default)
                todo.append(base)
            for w in words:
                if w.startswith("--from="):
                    todo.append(w[len("--from="):])
    text = "\n".join(line for name in order if name in needed for line in stages[name])
    copied = [w for name in order if name in needed for line in stages[name]
              if line.split()[0].upper() in ("COPY", "ADD") for w in line.split()[1:-1] if not w.startswith("--")]
    return text, copied



def _utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Builder:
    def __init__(self, settings, specs, echo: Echo = print, api=None):
        self.settings = settings
        self.specs = specs
        self.echo = echo
        self._api = api
        self.host = socket.gethostname()
        self.platform: Optional[str] = None   # --platform of the command, else RELMAN_PLATFORM_OVERRIDES

    @property
    def api(self):
        if self._api is None:
            self._api = engine.connect(self.settings)
        return self._api

    def registry(self) -> Registry:
        creds = load_credentials(self.settings, self.settings.registry)
        return Registry(self.settings.registry, creds, self.settings.registry_insecure, self.settings.push_retries)

    # ------------------------------------------------------------------ preparation

    def prepare(self, package: str, ref: str, platform: Optional[str] = None):
        plan = make_plan(self.specs, package, platform_for(self.settings, self.specs, package, platform or self.platform))
        if plan.platform_override:
            self.echo(f"platform override: {plan.name} is built on {plan.platform_name} instead of its production "
                      f"platform {plan.production_platform} (labels relman.platform.*)")
        base = plan.platform.base_image
        if not base.local and is_placeholder(base.digest):
            raise UsageError(f"image_specs/platforms.yaml: platforms.{plan.platform_name}.base_image.digest is a "
                             f"placeholder ({base.digest}); pin the real digest before building")
        holes = plan.placeholders()
        if holes:
            raise UsageError(f"{plan.spec_path}: {len(holes)} placeholder(s) must be filled before a real build: "
                             + "; ".join(f"{p} = {v}" for p, v in holes[:5]))
        upstream = resolve_url(plan.spec.source.git, self.settings.data_dir)
        repo = SourceRepo(self.settings.mirror_url(upstream), self.settings.data_dir / "git-cache", plan.spec_path,
                          upstream=upstream, mirror=self.settings.mirror_url)
        revision = repo.resolve(ref, plan.spec.source.submodules)
        dockerfile = render_dockerfile(plan)
        support = support_files(plan)
        return plan, repo, revision, dockerfile, support

    def base_digest(self, plan: ImagePlan) -> str:
        base = plan.platform.base_image
        if not base.local:
            assert base.digest, "prepare() refuses an unpinned base"
            return base.digest
        try:
            return self.api.inspect_image(base.reference)["Id"]
        except docker.errors.ImageNotFound:
            raise BuildError(f"base image {base.reference} of platform {plan.platform_name} is missing on this "
                             "builder; create it with `sudo scripts/local-stack up`") from None

    # ------------------------------------------------------------------ the build

    def build(self, package: str, ref: str, variants: Optional[List[str]] = None, push: bool = False,
              extra_tags: Optional[Dict[str, List[str]]] = None, force: bool = False,
              tag_prefix: Optional[str] = None, no_cache: bool = False,
              platform: Optional[str] = None) -> List[BuildResult]:
        plan, repo, revision, dockerfile, support = self.prepare(package, ref, platform)
        targets = self._targets(plan, variants)
        base_digest = self.base_digest(plan)
        repository = tags.repository(self.settings.registry, self.settings.namespace, plan.name)
        registry = self.registry() if push else None
        lookup = registry or self._maybe_registry()  # build keys are looked up even without --push
        created = _utcnow()
        build_args = {
            "RELMAN_SOURCE": repo.url, "RELMAN_VERSION": revision.version, "RELMAN_REVISION": revision.commit,
            "RELMAN_REF_NAME": revision.ref, "RELMAN_CREATED": created, "RELMAN_BASE_DIGEST": base_digest,
            "RELMAN_BUILDER_HOST": self.host, "RELMAN_BUILD_URL": self.settings.build_url or "none",
            "RELMAN_SPEC_HASH": plan.spec_hash, "RELMAN_DESCRIPTION": plan.spec.description,
        }
        context = None  # a temporary file: a GlastRelease-sized context must not sit in memory
        results: List[BuildResult] = []
        runtime_layers = None
        runtime_image: Optional[str] = None   # debug is built on this very image (see plan.RUNTIME_IMAGE_ARG)
        runtime_pushed: Optional[str] = None
        common_image: Optional[str] = None    # every stage starts from this image (see plan.COMMON_IMAGE_ARG)
        upstream = self._upstream(plan, revision, base_digest) if plan.upstream is not None else None
        upstream_images: Optional[Dict[str, str]] = None   # the extended package's image ids, once needed
        for t in targets:
            # env is made of OS packages only: ScienceTools' images are not in its stages, nor in its key
            uses_upstream = upstream is not None and "${RELMAN_UPSTREAM_" in stage_closure(dockerfile, t.name)[0]
            key = build_key(dockerfile, support, revision, base_digest, t, upstream.key_text if upstream and uses_upstream else "")
            wanted = [tags.release_tag(tag_prefix or revision.ref, t.image_suffix), tags.key_tag(key)]
            wanted += (extra_tags or {}).get(t.name, [])
            res = BuildResult(plan.name, revision.ref, revision.commit, t.variant, t.name, key, repository,
                              wanted, base_digest=base_digest, spec_hash=plan.spec_hash, builder_host=self.host,
                              platform=plan.platform_name, production_platform=plan.production_platform,
                              build_url=self.settings.build_url, started=_utcnow())
            t0 = time.monotonic()
            try:
                existing = None if force else self._find_existing(repository, key, t, lookup)
                if existing and t.variant == "debug" and runtime_layers is not None:
                    existing = self._if_over(existing, repository, runtime_layers, lookup, "debug", "runtime image")
                if existing and t.variant == "runtime" and upstream is not None:
                    if upstream_images is None:
                        upstream_images = self._upstream_images(plan, upstream, push)
                    existing = self._if_over(existing, repository, self._layers_of(upstream_images["runtime"]), lookup,
                                             "runtime", f"{upstream.package} runtime image")
                if existing:
                    self._skip(plan, res, existing, repository, lookup)
                else:
                    if context is None:
                        context, nfiles = build_context(repo, revision.commit, {"Dockerfile": dockerfile, **support},
                                                        out=tempfile.TemporaryFile(dir=self._tmp_dir()),
                                                        submodules=revision.submodules, layers=plan.layers)
                        size = context.seek(0, os.SEEK_END)
                        self.echo(f"context: {nfiles} file(s), {size / 1e6:.1f} MB, commit {revision.commit[:12]}")
                    if common_image is None:
                        common_image = self._common_image(plan, dockerfile, support, base_digest, context)
                    args = {**build_args, "RELMAN_BUILD_KEY": key, COMMON_IMAGE_ARG: common_image}
                    if upstream is not None and uses_upstream:
                        if upstream_images is None:
                            upstream_images = self._upstream_images(plan, upstream, push)
                        args[UPSTREAM_FULL_ARG] = upstream_images["full"]
                        args[UPSTREAM_RUNTIME_ARG] = upstream_images["runtime"]
                    if t.variant == "debug" and runtime_pushed and not runtime_image:
                        runtime_image = self._pull_runtime(repository, runtime_pushed)
                        runtime_layers = self._layers_of(runtime_image)
                    if t.variant == "debug" and runtime_image:
                        args[RUNTIME_IMAGE_ARG] = runtime_image
                    self._build_one(plan, t, res, context, args, repository, no_cache)
                    # cold for the first target only: the next ones reuse the stages just built (a cold debug
                    # or full build would compile everything again, and differ from runtime's build stage)
                    no_cache = False
                    over = self._over_upstream(t, res, upstream_images) if upstream_images else []
                    res.checks = [c.as_dict() for c in self._check(plan, t, res, runtime_layers, over)]
                    self._manifest(plan, res)
                    self._budget(plan, t, res)
                    res.status = "built"
                if t.variant == "runtime" and res.layers:
                    runtime_layers = [layer["digest"] for layer in res.layers]
                    runtime_image = res.image_id
                if t.variant == "runtime" and not res.image_id and res.digest:
                    runtime_pushed = res.digest   # found in the registry only: pulled if debug must be built
                    if lookup is not None:        # what a debug image found by its key must extend
                        config = lookup.image_config(tags.registry_path(repository), res.digest) or {}
                        runtime_layers = list((config.get("rootfs") or {}).get("diff_ids") or []) or None
                if push and not res.pushed:
                    assert registry is not None   # made above whenever push is asked for
                    self._push(res, repository, registry)
            except (BuildError, RegistryError, *ENGINE_GONE) as exc:
                err = exc if isinstance(exc, (BuildError, RegistryError)) else engine_lost(f"{plan.name} {t.name}", exc)
                res.status = "failed"
                res.message = str(err)
                if err is exc:
                    raise
                raise err from None
            finally:  # failed or not, the result is written: Jenkins archives it, the database records it
                res.finished = _utcnow()
                res.duration = round(time.monotonic() - t0, 3)
                self._write_result(res)
                results.append(res)
        if context is not None:
            context.close()
        return results

    # ------------------------------------------------------------------ a spec built on another's images

    def _upstream(self, plan: ImagePlan, revision: Revision, base_digest: str) -> "Upstream":
        """The package this one extends, at the spec's ref: its build keys (part of this package's keys), after
        checking that the submodules both umbrellas have are pinned at the same commits (its full image holds
        their objects, built from its pins)."""
        ext = plan.spec.extends
        assert ext is not None and plan.upstream is not None
        up_plan, up_repo, up_rev, up_dockerfile, up_support = self.prepare(ext.package, ext.ref, plan.platform_name)
        theirs = {s.path: s.commit for s in up_rev.submodules}
        differ = [f"{s.path} {s.commit[:12]} (theirs {theirs[s.path][:12]})" for s in revision.submodules
                  if s.path in theirs and theirs[s.path] != s.commit]
        if differ:
            raise UsageError(f"{plan.spec_path}: extends {ext.package} {ext.ref}, but {revision.ref} pins "
                             f"{len(differ)} shared submodule(s) at other commits: {'; '.join(differ[:5])}. Pin them "
                             f"as {ext.package} {ext.ref} does, or extend the {ext.package} ref that has these pins")
        keys = {v: build_key(up_dockerfile, up_support, up_rev, base_digest, up_plan.target(v)) for v in ("runtime", "full")}
        return Upstream(ext.package, ext.ref, keys)

    def _upstream_images(self, plan: ImagePlan, up: "Upstream", push: bool) -> Dict[str, str]:
        """The ids of the extended package's runtime and full images on this engine: found by their keys (this
        engine, else pulled from the registry), or built now."""
        self.echo(f"--- {plan.name} is built on {up.package} {up.ref}: its runtime and full images first")
        results = {r.variant: r for r in self.build(up.package, up.ref, ["runtime", "full"], push=push,
                                                    platform=plan.platform_name)}
        out = {}
        for v in ("runtime", "full"):
            r = results[v]
            if r.build_key != up.keys[v]:   # the same inputs: a difference is a defect here, not in the spec
                raise BuildError(f"{up.package} {v}: build key {r.build_key[:12]} is not the expected "
                                 f"{up.keys[v][:12]}")
            out[v] = r.image_id or self._pull(r.repository, r.digest or "", f"to build {plan.name} on it")
        return out

    def _over_upstream(self, t: Target, res: BuildResult, upstream_images: Dict[str, str]) -> List:
        """The runtime image of a spec built on another's: that package's runtime image with layers on top."""
        from release_manager.checks import CheckResult
        if t.variant != "runtime":
            return []
        theirs = self._layers_of(upstream_images["runtime"])
        mine = [layer["digest"] for layer in res.layers]
        ok = mine[:len(theirs)] == theirs and len(mine) > len(theirs)
        return [CheckResult("shares-upstream-runtime", ok,
                            f"{len(theirs)} layer(s) of the extended runtime image, {len(mine) - len(theirs)} more"
                            if ok else f"the extended runtime image's {len(theirs)} layer(s) are not the first of "
                            f"this image's {len(mine)}")]

    def _pull_runtime(self, repository: str, digest: str) -> str:
        return self._pull(repository, digest, "to build debug on it")

    def _pull(self, repository: str, digest: str, why: str) -> str:
        """An image the registry already holds, pulled so that an image built now extends it (not a stage
        rebuilt here, whose layers would differ from the pushed ones)."""
        creds = load_credentials(self.settings, self.settings.registry)
        self.echo(f"in the registry only: pulling {repository}@{digest} {why}")
        try:
            self.api.pull(repository, tag=digest, auth_config=creds.docker_auth() if creds else None)
            return self.api.inspect_image(f"{repository}@{digest}")["Id"]
        except docker.errors.APIError as exc:
            raise RegistryError(f"pulling {repository}@{digest} {why} failed: {exc.explanation or exc}") from None

    def _layers_of(self, image: str) -> List[str]:
        return list(self.api.inspect_image(image)["RootFS"].get("Layers", []))

    def _targets(self, plan: ImagePlan, variants: Optional[List[str]]) -> List[Target]:
        chosen = [plan.target(v) for v in variants] if variants else list(plan.targets)
        if any(t.variant == "debug" for t in chosen) and not any(t.variant == "runtime" for t in chosen):
            # debug is its runtime image plus one layer: that image is found by its key (or built) first
            self.echo("debug asked without runtime: runtime added (skipped when this engine or the registry has it)")
            chosen.append(plan.target("runtime"))
        # each kind's place (debug is checked against runtime's layers: runtime first)
        chosen.sort(key=lambda t: t.kind.order)
        return chosen

    def _maybe_registry(self) -> Optional[Registry]:
        try:
            return self.registry()
        except UsageError:
            return None

    def _find_existing(self, repository: str, key: str, target: Target, registry: Optional[Registry]):
        # Every build is tagged bk-<key> here: one inspect, however many images the engine holds
        # (a label-filtered image list costs half a second on a busy builder). Labels must match too:
        # a stage built on the way to another target never carries this tag.
        try:
            info = self.api.inspect_image(f"{repository}:{tags.key_tag(key)}")
        except docker.errors.ImageNotFound:
            info = None
        if info:
            labels = info["Config"].get("Labels") or {}
            if labels.get("relman.build-key") == key and labels.get("relman.variant") == target.variant and \
                    labels.get("relman.component", "") == (target.component.name if target.component else ""):
                return {"where": "local", "image_id": info["Id"]}
        if registry is not None:
            try:
                digest = registry.manifest_digest(tags.registry_path(repository), tags.key_tag(key))
            except RegistryError:
                return None
            if digest:
                return {"where": "registry", "digest": digest}
        return None

    def _if_over(self, existing: dict, repository: str, below: List[str], registry: Optional[Registry],
                 what: str, below_name: str) -> Optional[dict]:
        """The image found by its key, if it is the image below (its layers) plus its own; else None (built
        again). One key can name two images: a cold (--no-cache) build of runtime makes new layers under the
        same key, and leaves the debug image of that key (or the runtime image of a spec built on it) on the
        image it replaced. debug is exactly one layer more."""
        if existing["where"] == "local":
            layers = self._layers_of(existing["image_id"])
        else:
            assert registry is not None, "a registry hit comes from a registry"
            config = registry.image_config(tags.registry_path(repository), existing["digest"]) or {}
            layers = list((config.get("rootfs") or {}).get("diff_ids") or [])
        more = len(layers) - len(below)
        if layers[:len(below)] == below and (more == 1 if what == "debug" else more > 0):
            return existing
        where = existing.get("image_id", existing.get("digest", ""))[:19]
        self.echo(f"{what}: the image of this key ({where}, {existing['where']}) is not over this {below_name} "
                  "(a cold build replaced it): built again")
        return None

    def _skip(self, plan, res: BuildResult, existing: dict, repository: str, reg: Optional[Registry]):
        res.status = "skipped"
        if existing["where"] == "local":
            res.image_id = existing["image_id"]
            self._describe(res)
            path = self._manifest_path(res)
            if path.is_file():
                res.manifest_file = str(path)
            else:  # built by another data folder on this engine: list the packages once
                self._manifest(plan, res)
            for tag in res.tags:
                self.api.tag(res.image_id, repository, tag)
            res.message = f"build key {res.build_key[:12]} already built here as {res.image_id[:19]}: skipped"
        else:
            res.digest = existing["digest"]
            res.pushed = True
            rpath = tags.registry_path(repository)
            assert reg is not None, "a registry hit comes from a registry"
            for tag in res.tags:
                if reg.manifest_digest(rpath, tag) != res.digest:
                    reg.retag(rpath, tags.key_tag(res.build_key), tag)
            res.message = f"build key {res.build_key[:12]} already in the registry as {res.digest}: skipped"
        self.echo(f"{res.target}: {res.message}")

    def _common_image(self, plan: ImagePlan, dockerfile: str, support: Dict[str, str], base_digest: str,
                      context) -> str:
        """The id of the common stage's image on this engine: found by its tag (common_key), or built now (from
        the cache) and tagged, so that every later build of any spec with the same common stage starts from it,
        whatever other chains of the same steps the cache holds."""
        tag = common_key(dockerfile, support, base_digest)[:32]
        try:
            image_id = self.api.inspect_image(f"{COMMON_REPOSITORY}:{tag}")["Id"]
            self.echo(f"common layers: {COMMON_REPOSITORY}:{tag} ({image_id[:19]})")
            return image_id
        except docker.errors.ImageNotFound:
            pass
        except ENGINE_GONE as exc:
            raise engine_lost(f"{plan.name} common", exc) from None
        self.echo(f"--- building the common layers of {plan.name} ({plan.platform_name}): {COMMON_REPOSITORY}:{tag}")
        image_id = self._run_build(f"{plan.name} common", "common", context, {}, False)
        self.api.tag(image_id, COMMON_REPOSITORY, tag)
        return image_id

    def _build_one(self, plan: ImagePlan, t: Target, res: BuildResult, context, args: Dict[str, str],
                   repository: str, no_cache: bool = False):
        self.echo(f"--- building {plan.name} {t.name} from {res.ref} ({res.commit[:12]}), key {res.build_key[:12]}")
        res.image_id = self._run_build(f"{plan.name} {t.name}", t.name, context, args, no_cache)
        self._describe(res)
        missing = [k for k, v in res.labels.items() if k.startswith(("org.opencontainers", "relman.")) and not v]
        if missing:
            raise BuildError(f"{plan.name} {t.name}: empty label(s) {', '.join(missing)}")
        for tag in res.tags:
            self.api.tag(res.image_id, repository, tag)

    def _run_build(self, what: str, target: str, context, args: Dict[str, str], no_cache: bool) -> str:
        """One `docker build --target TARGET` of the context, its log echoed; the image id."""
        log: List[str] = []
        step = "(before the first step)"
        image_id = None
        try:
            context.seek(0)  # the same context serves every target of this run
            stream = self.api.build(fileobj=context, custom_context=True, target=target, buildargs=args,
                                    decode=True, rm=True, forcerm=True, pull=False, nocache=no_cache)
            for item in stream:
                if "stream" in item:
                    for line in item["stream"].splitlines():
                        if line.startswith("Step "):
                            step = line
                        log.append(line)
                        if line.strip():
                            self.echo(line)
                if "aux" in item and "ID" in item["aux"]:
                    image_id = item["aux"]["ID"]
                if "error" in item or "errorDetail" in item:
                    detail = item.get("error") or item["errorDetail"].get("message", "")
                    tail = "\n    ".join(log[-LOG_TAIL:])
                    raise BuildError(f"{what}: build failed at {step}\n  {detail.strip()}\n"
                                     f"  last lines of the log:\n    {tail}")
        except docker.errors.APIError as exc:
            raise BuildError(f"{what}: the engine refused the build: {exc.explanation or exc}") from None
        except ENGINE_GONE as exc:
            raise engine_lost(what, exc, f"during the build, at {step}") from None
        if not image_id:
            try:
                self.api.ping()
            except (docker.errors.DockerException, *ENGINE_GONE) as exc:
                raise engine_lost(what, exc, f"during the build, at {step}") from None
            raise BuildError(f"{what}: the build stream ended without an image id")
        return image_id

    def _describe(self, res: BuildResult):
        info = self.api.inspect_image(res.image_id)
        res.size = info["Size"]
        res.labels = info["Config"].get("Labels") or {}
        diff_ids = info["RootFS"].get("Layers", [])
        # history has an entry per instruction, oldest last; only RUN, COPY, ADD and the import made a layer
        made = [h["Size"] for h in reversed(self.api.history(res.image_id))
                if not h.get("CreatedBy", "").startswith("/bin/sh -c #(nop) ")
                or " COPY " in h["CreatedBy"] or " ADD " in h["CreatedBy"]]
        sizes = made if len(made) == len(diff_ids) else [None] * len(diff_ids)
        res.layers = [{"digest": d, "size": s} for d, s in zip(diff_ids, sizes)]

    def _check(self, plan, t, res, runtime_layers, more=()):
        from release_manager.checks import check_image  # ELF parsing is needed only after a real build
        layers = [layer["digest"] for layer in res.layers]
        results = list(more) + check_image(self.api, plan, t, res.image_id, runtime_layers, layers)
        for c in results:
            self.echo(f"check {t.name}: {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
        failed = [c for c in results if not c.ok]
        if failed:
            self._untag(res)
            raise BuildError(f"{plan.name} {t.name}: image check(s) failed: " +
                             "; ".join(f"{c.name} ({c.detail})" for c in failed))
        return results

    def _untag(self, res: BuildResult):
        for tag in res.tags:
            try:
                self.api.remove_image(f"{res.repository}:{tag}", noprune=True)
            except docker.errors.APIError:
                pass

    def _manifest(self, plan, res: BuildResult):
        assert res.image_id
        rc, out = engine.run(self.api, res.image_id, package_query_command(plan.manager))
        if rc != 0:
            raise BuildError(f"{plan.name} {res.target}: listing OS packages failed: {out[-500:]}")
        pkgs = [dict(zip(("name", "version", "arch"), line.split("\t"))) for line in out.splitlines() if "\t" in line]
        path = self._manifest_path(res)
        _write_json(path, {"image_id": res.image_id, "manager": plan.manager, "packages": pkgs})
        res.manifest_file = str(path)

    def _budget(self, plan, t: Target, res: BuildResult):
        budget = t.component.size_budget if t.component else plan.spec.size_budget.get(t.variant)
        if not budget or res.size is None:
            return
        over = res.size > budget.max
        res.size_budget = {"max": budget.max, "on_exceed": budget.on_exceed, "over": over}
        msg = f"{t.name}: {res.size / 1e6:.0f} MB of a {budget.max / 1e6:.0f} MB budget"
        if over and budget.on_exceed == "fail":
            self._untag(res)
            raise BuildError(f"{plan.name} {msg}: over budget (the spec says fail)")
        self.echo(("WARNING: over budget: " if over else "size: ") + msg)
        if budget.target is not None:
            res.size_budget.update(target=budget.target, over_target=res.size > budget.target)
            if res.size > budget.target:
                self.echo(f"WARNING: {t.name} is {(res.size - budget.target) / 1e6:.0f} MB over its "
                          f"{budget.target / 1e6:.0f} MB size target")

    def _push(self, res: BuildResult, repository: str, registry: Registry):
        creds = load_credentials(self.settings, self.settings.registry)
        auth = creds.docker_auth() if creds else None
        path = tags.registry_path(repository)
        try:
            registry.ping()
        except RegistryError as exc:
            raise RegistryError(f"cannot push {res.target}: {exc}") from None
        for tag in res.tags:
            digest = None
            try:
                for item in self.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                    if "error" in item or "errorDetail" in item:
                        detail = item.get("error") or item["errorDetail"].get("message")
                        raise RegistryError(f"push of {repository}:{tag} failed: {detail}"
                                            + self._registry_gone(registry))
                    if "aux" in item and "Digest" in item["aux"]:
                        digest = item["aux"]["Digest"]
            except docker.errors.APIError as exc:
                raise RegistryError(f"push of {repository}:{tag} refused: {exc.explanation or exc}") from None
            remote = registry.manifest_digest(path, tag)
            if not digest or remote != digest:
                raise RegistryError(f"push of {repository}:{tag} not confirmed: engine said {digest}, "
                                    f"registry says {remote}")
            res.digest = digest
            self.echo(f"pushed {repository}:{tag} {digest}")
        res.pushed = True

    @staticmethod
    def _registry_gone(registry: Registry) -> str:
        """After a failed push: say so when the registry itself stopped answering."""
        try:
            requests.get(f"{registry.base}/", timeout=5)        # any answer, even 401, means it is there
            return ""
        except requests.RequestException:
            return (f"\n  the registry {registry.host} stopped answering during the push; start it again "
                    "(the local ones: `sudo scripts/local-stack up`) and run the build again: the image was not "
                    "recorded as pushed, and a build whose key is already built here is not rebuilt")

    def _tmp_dir(self) -> Path:
        d = self.settings.data_dir / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _manifest_path(self, res: BuildResult) -> Path:
        # keyed by build key: the same image has the same packages whatever ref it was built for
        return self.settings.results_dir / "manifests" / f"{res.build_key}.packages.json"

    def _result_dir(self, res: BuildResult) -> Path:
        return self.settings.results_dir / res.package / tags.ref_slug(res.ref)

    def _write_result(self, res: BuildResult):
        _write_json(self._result_dir(res) / f"{res.target}.json", res.as_dict())


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
