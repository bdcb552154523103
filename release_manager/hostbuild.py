"""The bare-metal reference build: the same commit and the same recipe as the image, built on this
machine outside any container into its own prefix, the way a developer builds it.

The sources come from the very build context the image gets (submodules and layers included); the
spec's support files, build environment, layer steps and steps run in the same order with PREFIX
pointing at the host prefix. A stamp records what was built: the same inputs are reused, not rebuilt.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional

from release_manager.errors import RelmanError, UsageError
from release_manager.plan import ImagePlan
from release_manager.sources import build_context

Echo = Callable[[str], None]


def missing_packages(plan: ImagePlan) -> List[str]:
    """The spec's build OS packages not installed on this (Debian) machine."""
    if plan.manager != "apt":
        raise UsageError(f"a host build needs the platform's package manager; {plan.platform_name} uses "
                         f"{plan.manager}, this machine apt: build with --platform debian12-local")
    pkgs = [p for p in plan.spec.os_packages.for_manager("apt").build]
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *pkgs],
                       capture_output=True, text=True)
    installed = {ln.split()[0] for ln in r.stdout.splitlines() if len(ln.split()) > 1 and ln.split()[1] == "ii"}
    return [p for p in pkgs if p not in installed]


def host_build(builder, package: str, ref: str, prefix: Optional[Path] = None, force: bool = False,
               echo: Echo = print) -> Path:
    """Build package at ref on this machine; returns the prefix. Reused when nothing changed."""
    plan, repo, revision, dockerfile, support = builder.prepare(package, ref)
    settings = builder.settings
    prefix = Path(prefix or settings.data_dir / "host-build" / package)
    missing = missing_packages(plan)
    if missing:
        raise UsageError(f"host build of {package}: build packages missing on this machine: {' '.join(missing)}; "
                         f"install them with: apt-get install -y {' '.join(missing)}")
    stamp_file = prefix / ".relman-host-build.json"
    stamp = {"package": package, "commit": revision.commit, "tree": revision.tree,
             "submodules": [[s.path, s.commit] for s in revision.submodules],
             "steps": plan.spec.build.model_dump(mode="json"), "files": plan.files, "prefix": str(prefix)}
    if not force and stamp_file.is_file():
        try:
            old = json.loads(stamp_file.read_text())
        except ValueError:
            old = None
        if old and {k: old.get(k) for k in stamp} == stamp:
            echo(f"host build of {package} {ref} ({revision.commit[:12]}) already in {prefix}: reused")
            return prefix
    work = prefix.parent / f"{prefix.name}.src"
    files_dir = prefix.parent / f"{prefix.name}.files"
    # a host build replaces its own folders only: never a folder that holds anything else (--prefix /usr)
    ours = stamp_file.is_file()
    for d in (prefix, work, files_dir):
        if d.exists() and any(d.iterdir()) and not ours:
            raise UsageError(f"host build of {package}: {d} exists and is not empty, and {prefix} is not a relman "
                             "host build (no .relman-host-build.json): give --prefix a new or empty folder")
    for d in (work, files_dir, prefix):
        shutil.rmtree(d, ignore_errors=True)
    work.mkdir(parents=True)
    prefix.mkdir(parents=True)
    # claimed before building: a build that fails half-way leaves folders the next run may replace
    stamp_file.write_text(json.dumps({"state": "building", "package": package, "commit": revision.commit}) + "\n")
    t0 = time.monotonic()
    with tempfile.TemporaryFile(dir=builder._tmp_dir()) as ctx:
        build_context(repo, revision.commit, {}, out=ctx, submodules=revision.submodules, layers=plan.layers)
        ctx.seek(0)
        staging = Path(tempfile.mkdtemp(prefix=".ctx-", dir=prefix.parent))
        try:
            with tarfile.open(fileobj=ctx) as tar:
                tar.extractall(staging, filter="data")
            for item in (staging / "src").iterdir():
                shutil.move(str(item), work / item.name)
            for rel, text in plan.files.items():
                p = files_dir / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
            env = dict(os.environ)
            env.update(dict(plan.build_env))
            env.update(PREFIX=str(prefix), **({"RELMAN_FILES": str(files_dir)} if plan.files else {}))
            # the layers arrive one at a time, as in the image: the recipe may depend on what is present
            for path, folder in plan.layers:
                dest = work / path
                shutil.rmtree(dest, ignore_errors=True)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(staging / folder), dest)
                for step in plan.spec.build.layers.steps:
                    _run(step, work, {**env, "RELMAN_LAYER": path}, package, echo)
            for step in plan.spec.build.steps:
                _run(step, work, env, package, echo)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    stamp_file.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    echo(f"host build of {package} {ref} ({revision.commit[:12]}) installed in {prefix} "
         f"in {time.monotonic() - t0:.0f} s")
    return prefix


def _run(step: str, cwd: Path, env: dict, package: str, echo: Echo) -> None:
    echo(f"host build: {step}" + (f"  (RELMAN_LAYER={env['RELMAN_LAYER']})" if "RELMAN_LAYER" in env else ""))
    r = subprocess.run(["/bin/sh", "-c", step], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        tail = "\n    ".join(r.stdout.splitlines()[-25:])
        raise RelmanError(f"host build of {package} failed at `{step}` (exit {r.returncode}):\n    {tail}")


def ensure_host_reference(settings, specs, package: str, echo: Echo = print) -> Path:
    """The host reference a spec names (verification.reference.host_ref), built with the image's recipe
    into its host_prefix, or reused when its inputs have not changed."""
    from release_manager.build import Builder
    from release_manager.verify.runner import resolve_path
    ref = specs.get(package).spec.verification.reference
    prefix = resolve_path(ref.host_prefix, settings)
    return host_build(Builder(settings, specs, echo=echo), package, ref.host_ref, prefix, echo=echo)
