"""`relman nightly PACKAGE`: build the default branch's head, verify, tag, move the aliases.

    resolve head -> build keys -> (same keys as the last nightly: record a skip, done)
    -> build + push the nightly variants (the Builder skips keys it already has)
    -> nightly-YYYYMMDD-<variant> (a manifest copy) -> record -> verify -> record the verdict
    -> nightly-<variant> moved only when that variant's verification passed
A failure (build, push, verification) notifies RELMAN_WEBHOOK_URL and ends with exit code 1.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from release_manager import tags
from release_manager.errors import BuildError, RegistryError, RelmanError
from release_manager.workflows import verification
from release_manager.workflows.common import (Context, NIGHTLY_RE, notify, record_failed_results, record_result,
                                              write_audit, write_summary)
from release_manager.tags import registry_path


class NightlyFailed(RelmanError):
    """The nightly ran and failed (build, push or verification); its report is attached."""

    def __init__(self, message: str, report: Dict[str, Any]):
        super().__init__(message)
        self.report = report


def nightly_variants(spec) -> List[str]:
    return list(spec.jenkins.nightly.variants) if spec.jenkins.nightly else list(spec.variants)


def planned_keys(ctx: Context, package: str, ref: str, variants: List[str]):
    """(revision, {target name: (target, build key)}) without building anything."""
    from release_manager.build import build_key
    builder = ctx.builder()
    plan, repo, revision, dockerfile, support = builder.prepare(package, ref)
    base = builder.base_digest(plan)
    keys = {}
    for v in variants:
        t = plan.target(v)
        keys[t.name] = (t, build_key(dockerfile, support, revision, base, t))
    return revision, keys


def last_nightly_matches(ctx: Context, package: str, keys) -> Optional[List[Dict[str, Any]]]:
    """The images of an earlier nightly with exactly these build keys (one per target), or None."""
    found = []
    for name, (t, key) in keys.items():
        rows = [r for r in _rows_with_key(ctx, package, key, t.variant)
                if any(NIGHTLY_RE.match(tag) for tag in r["tags"])
                and r["status"] not in ("failed", "retired") and r["digest"]]
        if not rows:
            return None
        found.append(rows[-1])
    return found


def _rows_with_key(ctx, package, key, variant):
    from release_manager.workflows.common import image_rows
    return image_rows(ctx, package, build_key=key, variant=variant)


def run_nightly(ctx: Context, package: str, day: Optional[dt.date] = None, verify: bool = True,
                report_dir: Optional[Path] = None, force: bool = False) -> Dict[str, Any]:
    t0 = time.monotonic()
    spec = ctx.spec(package)
    branch = spec.source.default_branch
    day = day or dt.datetime.now(dt.timezone.utc).date()
    variants = nightly_variants(spec)
    report: Dict[str, Any] = {"status": "running", "branch": branch, "date": day.isoformat(), "variants": variants,
                              "images": []}
    try:
        revision, keys = planned_keys(ctx, package, branch, variants)
    except RelmanError as exc:
        return _fail(ctx, package, report, f"nightly of {package}: cannot resolve {branch}: {exc}", t0)
    report.update(commit=revision.commit, ref=revision.ref)
    ctx.echo(f"nightly {package}: {branch} is at {revision.commit[:12]}; "
             f"{len(keys)} target(s): {', '.join(keys)}")

    if not force:
        same = last_nightly_matches(ctx, package, keys)
        if same is not None:
            last = sorted({m.group(1) for r in same for tag in r["tags"] if (m := NIGHTLY_RE.match(tag))})[-1]
            msg = (f"nothing changed since the nightly of {last}: {branch} at {revision.commit[:12]}, "
                   f"same build keys; skipped")
            ctx.echo(f"nightly {package}: {msg}")
            write_audit(ctx, "nightly-skip", package, {"commit": revision.commit, "branch": branch,
                                                       "date": day.isoformat(), "last": last})
            report.update(status="skipped", message=msg, last_nightly=last,
                          images=[{"variant": r["variant"], "status": r["status"], "digest": r["digest"],
                                   "image": r["id"]} for r in same], duration=round(time.monotonic() - t0, 3))
            write_summary(ctx, "nightly", package, report)
            return report

    # build and push (the Builder skips any target whose key exists here or in the registry)
    try:
        results = ctx.builder().build(package, branch, variants, push=True)
    except (BuildError, RegistryError) as exc:
        report["recorded_failures"] = record_failed_results(ctx, package, branch, list(keys))
        return _fail(ctx, package, report, f"nightly of {package} failed to build or push: {exc}", t0)

    reg = ctx.registry()
    failures = []
    for r in results:
        suffix = keys[r.target][0].image_suffix if r.target in keys else r.variant
        dated = tags.nightly_tag(day, suffix)
        path = registry_path(r.repository)
        item: Dict[str, Any] = {"variant": r.variant, "target": r.target, "build": r.status, "digest": r.digest,
                                "tag": f"{r.repository}:{dated}", "build_key": r.build_key}
        report["images"].append(item)
        try:
            got = reg.retag(path, r.digest, dated)
            if got != r.digest:
                raise RegistryError(f"{dated} points at {got}, not {r.digest}")
            outcome = record_result(ctx, r.as_dict(), [dated])
        except RelmanError as exc:
            item.update(status="failed", message=str(exc))
            failures.append(f"{r.target}: {exc}")
            continue
        item["image"] = outcome.image
        # verification
        if not verify:
            v = verification.Verdict("not-run", "--no-verify")
        elif r.variant not in verification.VERIFIABLE:
            v = verification.Verdict("not-applicable", f"the {r.variant} variant carries no software to verify")
        else:
            workdir = (report_dir or _report_dir(ctx, package, day)) / r.target
            image = verification.ensure_local(ctx, r.repository, r.digest)
            v = verification.verify_image(ctx, package, image, workdir)
        item.update(verdict=v.verdict, verify_reason=v.reason or None, verify_report=v.report)
        ctx.echo(f"nightly {package} {r.target}: verification {v.verdict}" + (f" ({v.reason})" if v.reason else ""))
        if v.recordable:
            try:
                item["verification_run"] = verification.record(ctx, outcome.image, v)
            except RelmanError as exc:           # e.g. a promoted image: its verdict stands as recorded
                item["verify_record"] = f"not recorded: {exc}"
        if v.verdict in ("failed", "error"):
            failures.append(f"{r.target}: verification {v.verdict}")
        # the moving alias: only after a passed verification
        if v.verdict == "passed":
            alias = tags.nightly_alias(suffix)
            try:
                got = reg.retag(path, r.digest, alias)
                record_result(ctx, r.as_dict(), [dated, alias])
                item["alias"] = f"{r.repository}:{alias}"
                ctx.echo(f"nightly {package}: {alias} -> {got}")
            except RelmanError as exc:
                failures.append(f"{r.target}: moving {alias}: {exc}")
        item["status"] = "ok" if v.verdict == "passed" else v.verdict
    report["duration"] = round(time.monotonic() - t0, 3)
    if failures:
        return _fail(ctx, package, report, f"nightly of {package} failed: " + "; ".join(failures), t0)
    not_run = [i["target"] for i in report["images"] if i.get("verdict") == "not-run"]
    report["status"] = "passed" if not not_run else "unverified"
    report["message"] = ("built, verified, tagged; aliases moved" if not not_run else
                         f"built and tagged; verification not run for {', '.join(not_run)}: aliases not moved")
    write_summary(ctx, "nightly", package, report)
    return report


def _report_dir(ctx: Context, package: str, day: dt.date) -> Path:
    """Verification reports: under Jenkins in $WORKSPACE/reports (the nightly job collects reports/**/*.xml
    as JUnit), else <data_dir>/results/<package>/nightly/<YYYYMMDD>."""
    import os
    if os.environ.get("WORKSPACE") and os.environ.get("JENKINS_URL"):
        return Path(os.environ["WORKSPACE"]) / "reports" / "nightly"
    return ctx.settings.results_dir / package / "nightly" / day.strftime("%Y%m%d")


def _fail(ctx, package, report, message, t0):
    report.update(status="failed", message=message, duration=round(time.monotonic() - t0, 3))
    ctx.echo(f"nightly {package}: FAILED: {message}")
    write_summary(ctx, "nightly", package, report)
    report["notified"] = notify(ctx, "nightly", package, "failed", message,
                                {"images": report.get("images", []), "commit": report.get("commit")})
    raise NightlyFailed(message, report)
