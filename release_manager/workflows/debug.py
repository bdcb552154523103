"""`relman debug-build PACKAGE --ref REF --requester NAME [--ttl DAYS]`: an on-demand debug image.

Inputs are checked before anything is recorded or built: the ref (sources.validate_ref), the
requester (tags.check_requester), the resulting tag (tags.debug_tag) and the TTL. The debug variant
is built with the runtime it stands on, pushed as dev-<requester>-<ref>-debug, and the request is
recorded with its expiry (gc removes it after that).
"""
from __future__ import annotations

import datetime as dt
import shlex
from typing import Any, Dict

from release_manager import tags
from release_manager.errors import BuildError, RegistryError, RelmanError, UsageError
from release_manager.validate import ref as validate_ref
from release_manager.workflows.common import Context, notify, record_failed_results, record_result, write_summary

MAX_TTL_DAYS = 90


def check_ttl(ttl) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_DAYS:
        raise UsageError(f"--ttl {ttl!r}: a whole number of days from 1 to {MAX_TTL_DAYS}")
    return ttl


def debug_build(ctx: Context, package: str, ref: str, requester: str, ttl: int = 14) -> Dict[str, Any]:
    # strict validation first: nothing is recorded or built for a bad input
    validate_ref(ref)
    tags.check_requester(requester)
    check_ttl(ttl)
    tag = tags.debug_tag(requester, ref)
    spec = ctx.spec(package)
    if "debug" not in spec.variants:
        raise UsageError(f"{package} has no debug variant (variants: {', '.join(spec.variants)})")
    from release_manager.plan import make_plan
    plan = make_plan(ctx.specs, package)
    debug_target = plan.target("debug").name
    runtime_target = plan.target("runtime").name
    builder = ctx.builder()
    builder.prepare(package, ref)            # the ref must exist before a request is recorded

    from release_manager.db import request_debug_build, update_debug_request
    db = ctx.database()
    req = request_debug_build(requester, package, ref, expires_in=dt.timedelta(days=ttl), actor=requester, db=db)
    report: Dict[str, Any] = {"status": "building", "request": req, "ref": ref, "requester": requester,
                              "ttl_days": ttl, "images": []}
    update_debug_request(req, "building", actor=requester, db=db)
    try:
        results = builder.build(package, ref, ["runtime", "debug"], push=True, extra_tags={debug_target: [tag]})
    except (BuildError, RegistryError) as exc:
        record_failed_results(ctx, package, ref, [runtime_target, debug_target])
        update_debug_request(req, "failed", actor=requester, db=db)
        report.update(status="failed", message=str(exc))
        write_summary(ctx, "debug-build", package, report)
        notify(ctx, "debug-build", package, "failed", f"debug build of {package} {ref} for {requester}: {exc}")
        raise
    debug_pk = None
    for r in results:
        o = record_result(ctx, r.as_dict(), requested_by=requester if r.target == debug_target else None)
        report["images"].append({"variant": r.variant, "status": r.status, "digest": r.digest, "image": o.image,
                                 "tag": f"{r.repository}:{r.tags[0]}"})
        if r.target == debug_target:
            debug_pk, debug = o.image, r
    update_debug_request(req, "built", image=debug_pk, actor=requester, db=db)
    ref_image = f"{debug.repository}:{tag}"
    binary = _main_binary(ctx, spec, package, debug.image_id or f"{debug.repository}@{debug.digest}")
    expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=ttl)).strftime("%Y-%m-%d")
    report.update(status="built", image=ref_image, digest=debug.digest, expires=expires, binary=binary,
                  pull=f"docker pull {ref_image}",
                  gdb=(f"docker run --rm -it --cap-add=SYS_PTRACE --security-opt seccomp=unconfined "
                       f"{ref_image} gdb {shlex.quote(binary)}"),
                  apptainer=f"apptainer exec docker://{ref_image} gdb {shlex.quote(binary)}")
    write_summary(ctx, "debug-build", package, report)
    return report


def _main_binary(ctx: Context, spec, package: str, image: str) -> str:
    """The program to start gdb on: <prefix>/bin/<package> when present, else the first one there."""
    from release_manager import engine
    bindir = f"{spec.prefix.rstrip('/')}/bin"
    try:
        rc, out = engine.run(ctx.engine(), image, ["ls", "-1", bindir])
        names = [n.strip() for n in out.splitlines() if n.strip()] if rc == 0 else []
    except RelmanError:
        names = []
    except Exception:  # noqa: BLE001 - only a hint
        names = []
    if package in names or not names:
        return f"{bindir}/{package}"
    return f"{bindir}/{names[0]}"
