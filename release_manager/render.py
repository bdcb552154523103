"""Plan -> files: the Dockerfile with every target, its support files, and Apptainer definitions.

Templates are files under release_manager/templates (jinja2, StrictUndefined): a missing
value is an error, never an empty string in an image.
"""
from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional

import jinja2

from release_manager import plan as planmod
from release_manager.errors import UsageError
from release_manager.plan import ImagePlan

TEMPLATES = Path(__file__).parent / "templates"


def _dq(value: str) -> str:
    """A double-quoted Dockerfile/shell word: backslash and double quote escaped."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sq(value: str) -> str:
    """A single-quoted shell word."""
    return "'" + str(value).replace("'", "'\\''") + "'"


def environment(search_path: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(search_path)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             autoescape=False)
    env.filters.update(dq=_dq, sq=_sq, dirname=posixpath.dirname, tojson=lambda v: json.dumps(v))
    return env


def render_dockerfile(plan: ImagePlan, env: Optional[jinja2.Environment] = None) -> str:
    env = env or environment()
    return env.get_template("Dockerfile.j2").render(
        plan=plan, support=planmod.SUPPORT_DIR, helpers=planmod.HELPERS_IN_IMAGE,
        debug_root=planmod.DEBUG_ROOT, payload=planmod.PAYLOAD_ROOT, build_args=planmod.BUILD_ARGS,
        entrypoint=planmod.ENTRYPOINT, runtime_image_arg=planmod.RUNTIME_IMAGE_ARG,
        common_image_arg=planmod.COMMON_IMAGE_ARG, upstream_full_arg=planmod.UPSTREAM_FULL_ARG,
        upstream_runtime_arg=planmod.UPSTREAM_RUNTIME_ARG, prefix_delta=planmod.PREFIX_DELTA_ROOT)


def render_entrypoint(plan: ImagePlan, env: Optional[jinja2.Environment] = None) -> str:
    """The uniform command line of the package's images (--version, --list, --env, PROGRAM ARGS...)."""
    return (env or environment()).get_template("entrypoint.sh.j2").render(plan=plan)


def support_files(plan: ImagePlan, env: Optional[jinja2.Environment] = None) -> Dict[str, str]:
    """Files the Dockerfile COPYs from the build context's .relman/ folder."""
    env = env or environment()
    out = {f"{planmod.SUPPORT_DIR}/split-debug.sh": (TEMPLATES / "split-debug.sh").read_text(),
           f"{planmod.SUPPORT_DIR}/entrypoint.sh": render_entrypoint(plan, env)}
    for rel, text in plan.files.items():    # the spec's own support files (build.files)
        out[f"{planmod.SUPPORT_DIR}/files/{rel}"] = text
    if any(t.variant == "debug" for t in plan.targets):
        out[f"{planmod.SUPPORT_DIR}/collect-new-files.sh"] = (TEMPLATES / "collect-new-files.sh").read_text()
    if plan.upstream is not None:
        out[f"{planmod.SUPPORT_DIR}/prefix-delta.sh"] = (TEMPLATES / "prefix-delta.sh").read_text()
    if plan.yum_repo_file:
        out[f"{planmod.SUPPORT_DIR}/{plan.yum_repo_file}"] = env.get_template("relman.repo.j2").render(plan=plan)
    return out


def render_package(plan: ImagePlan, registry: str, namespace: str,
                   variants: Optional[Iterable[str]] = None, digests: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Every file relman generates for a package: {relative path: text}. digests: {target name: registry
    digest} of images already pushed; their Apptainer definitions name the image by digest, the others
    say the digest was unknown and use the moving tag nightly-<suffix> (moved only after verification)."""
    from release_manager import tags
    env = environment()
    files = {"Dockerfile": render_dockerfile(plan, env)}
    files.update(support_files(plan, env))
    targets = [plan.target(v) for v in variants] if variants else plan.targets
    digests = check_digests(plan, digests or {})
    for t in targets:
        files[f"singularity/{t.name}.def"] = env.get_template("singularity.def.j2").render(
            plan=plan, target=t, registry=registry, namespace=namespace, digest=digests.get(t.name),
            default_tag=tags.nightly_alias(t.image_suffix))
    return files


def check_digests(plan: ImagePlan, digests: Dict[str, str]) -> Dict[str, str]:
    """{target: digest} checked: known targets, sha256:<64 lowercase hex digits>."""
    import re
    names = [t.name for t in plan.targets]
    for name, digest in digests.items():
        if name not in names:
            raise UsageError(f"--digest {name}={digest}: {plan.name} has no target {name!r} (have: {', '.join(names)})")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise UsageError(f"--digest {name}={digest!r}: a digest is sha256:<64 lowercase hex digits>")
    return dict(digests)


def write_files(files: Dict[str, str], out: Path) -> None:
    """Write all files or none: render into a temporary folder, then move into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".relman-render-", dir=out.parent))
    try:
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            if rel.endswith(".sh"):
                os.chmod(p, 0o755)
        out.mkdir(parents=True, exist_ok=True)
        for rel in files:
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
