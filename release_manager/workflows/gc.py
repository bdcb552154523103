"""`relman gc [--dry-run]`: retention.

What goes (settings from the environment, see docs/workflows.md):
  - nightly-YYYYMMDD-<variant> tags older than RELMAN_GC_NIGHTLY_DAYS days (default 14), except the
    newest RELMAN_GC_KEEP dates per variant (default 7);
  - debug builds whose request expired: the request becomes expired, dev-<requester>-<ref>-debug goes
    (and <ref>-debug, <ref>-runtime when the ref is neither a release tag nor the default branch and no
    live request of the same ref remains);
  - failed builds older than RELMAN_GC_FAILED_DAYS days (default 7): their rows are retired.
A tag is removed alone (common.untag). An image's manifest is deleted, and its row retired, only when
it lost a tag here and nothing but build-key tags (bk-*) still points at it: an alias, a release tag,
a newer nightly keeps it. An image that is or was promoted is never deleted, whatever points at it.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set

from release_manager import tags
from release_manager.errors import RelmanError, UsageError
from release_manager.workflows.common import (GC_ACTOR, NIGHTLY_RE, Context, image_rows, sif_artifacts, tag_digests,
                                              untag, utcnow, write_summary)
from release_manager.tags import registry_path


@dataclass
class GcSettings:
    nightly_days: int = 14
    keep: int = 7
    failed_days: int = 7

    @classmethod
    def from_env(cls) -> "GcSettings":
        out = {}
        for field, var in (("nightly_days", "RELMAN_GC_NIGHTLY_DAYS"), ("keep", "RELMAN_GC_KEEP"),
                           ("failed_days", "RELMAN_GC_FAILED_DAYS")):
            raw = os.environ.get(var)
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
                if value < 0:
                    raise ValueError
            except ValueError:
                raise UsageError(f"{var}={raw!r}: expected a whole number >= 0") from None
            out[field] = value
        return cls(**out)


def collect(ctx: Context, dry_run: bool = False, package: Optional[str] = None,
            today: Optional[dt.date] = None, conf: Optional[GcSettings] = None,
            now: Optional[dt.datetime] = None) -> Dict[str, Any]:
    """`today`/`now` (naive UTC) default to the clock; tests and backfills pass them."""
    conf = conf or GcSettings.from_env()
    now = now or utcnow()
    today = today or now.date()
    rows = image_rows(ctx, package)
    host = ctx.settings.registry
    reg = ctx.registry()
    report: Dict[str, Any] = {"status": "dry-run" if dry_run else "done", "settings": conf.__dict__,
                              "today": today.isoformat(), "removed_tags": [], "deleted_manifests": [],
                              "retired": [], "expired_requests": [], "kept": []}
    verb = "would " if dry_run else ""

    repos = sorted({r["repository"] for r in rows if r["repository"].split("/", 1)[0] == host})
    tagmap: Dict[str, Dict[str, Optional[str]]] = {repo: tag_digests(reg, registry_path(repo)) for repo in repos}
    remove: Dict[str, Set[str]] = {repo: set() for repo in repos}
    why: Dict[tuple, str] = {}

    # 1. old nightlies: keep the newest K dates of each variant, and anything younger than N days
    cutoff = today - dt.timedelta(days=conf.nightly_days)
    for repo, tmap in tagmap.items():
        by_suffix: Dict[str, List[tuple]] = {}
        for tag in tmap:
            m = NIGHTLY_RE.match(tag)
            if m:
                try:
                    day = dt.datetime.strptime(m.group(1), "%Y%m%d").date()
                except ValueError:
                    continue
                by_suffix.setdefault(m.group(2), []).append((day, tag))
        for suffix, items in by_suffix.items():
            items.sort(reverse=True)
            for day, tag in items[conf.keep:]:
                if day < cutoff:
                    remove[repo].add(tag)
                    why[(repo, tag)] = f"nightly of {day}, older than {conf.nightly_days} day(s) and not among " \
                                       f"the newest {conf.keep}"

    # 2. expired debug builds
    expired = _expired_requests(ctx, package, now)
    active = {(r["package"], r["ref"]) for r in _active_requests(ctx, package, now)}
    for req in expired:
        spec = ctx.specs.packages.get(req["package"])
        repo = tags.repository(host, ctx.settings.namespace, req["package"])
        req["tags"] = []
        try:
            dev = tags.debug_tag(req["requester"], req["ref"])
        except UsageError:
            dev = None
        candidates = [dev] if dev else []
        if spec is not None:
            s = spec.spec
            is_release = bool(re.search(s.source.tag_pattern, req["ref"])) if s.source.tag_pattern else False
            shared = (req["package"], req["ref"]) in active      # another live request of the same ref
            if not is_release and req["ref"] != s.source.default_branch and not shared:
                candidates += [tags.release_tag(req["ref"], "debug"), tags.release_tag(req["ref"], "runtime")]
        for tag in candidates:
            if repo in tagmap and tag in tagmap[repo]:
                remove[repo].add(tag)
                req["tags"].append(tag)
                why[(repo, tag)] = f"debug build request {req['id']} of {req['requester']} expired {req['expires_at']}"

    # 3. which images lose their last meaningful tag: their manifest goes and their row is retired
    protected = {r["digest"] for r in rows if r["digest"] and (r["status"] == "promoted" or r["promotions"])}
    touched = {}
    for repo, tmap in tagmap.items():
        for tag in sorted(remove[repo]):
            d = tmap.get(tag)
            if d:
                touched.setdefault((repo, d), []).append(tag)
    deletable = set()
    for (repo, d), lost in touched.items():
        left = [t for t, dd in tagmap[repo].items() if dd == d and t not in remove[repo]]
        meaningful = [t for t in left if not t.startswith("bk-")]
        if d in protected:
            report["kept"].append({"digest": d, "repository": repo, "why": "promoted image: never deleted",
                                   "tags_removed": lost})
        elif meaningful:
            report["kept"].append({"digest": d, "repository": repo, "why": f"still tagged {', '.join(meaningful)}",
                                   "tags_removed": lost})
        else:
            deletable.add((repo, d))

    # 4. act (or say what would happen)
    for repo in repos:
        path = registry_path(repo)
        for tag in sorted(remove[repo]):
            d = tagmap[repo].get(tag)
            if (repo, d) in deletable:
                continue                          # goes with its manifest below
            ctx.echo(f"{verb}remove tag {repo}:{tag} ({why[(repo, tag)]})")
            if not dry_run:
                untag(reg, path, tag)
            report["removed_tags"].append({"tag": f"{repo}:{tag}", "digest": d, "why": why[(repo, tag)]})
    from release_manager.db import transition, update_debug_request
    for repo, d in sorted(deletable):
        path = registry_path(repo)
        gone = sorted(t for t, dd in tagmap[repo].items() if dd == d)
        ctx.echo(f"{verb}delete manifest {repo}@{d} (tags {', '.join(gone)})")
        if not dry_run:
            reg.delete_manifest(path, d)
        for sif in sif_artifacts(ctx, d):             # a SIF goes with the image it was built from
            ctx.echo(f"{verb}delete SIF {sif['registry_ref']} ({sif['registry_digest']}) built from {repo}@{d}")
            if not dry_run:
                reg.delete_manifest(path, sif["registry_digest"])
            report.setdefault("deleted_sifs", []).append({"ref": sif["registry_ref"], "digest": sif["registry_digest"],
                                                          "image": d})
        report["deleted_manifests"].append({"repository": repo, "digest": d, "tags": gone,
                                            "why": "; ".join(sorted({why[(repo, t)] for t in gone if (repo, t) in why}))})
        for r in rows:
            if r["digest"] == d and r["repository"] == repo and r["status"] != "retired":
                _retire(ctx, r, "gc: " + report["deleted_manifests"][-1]["why"], dry_run, report, verb, transition)
    failed_cutoff = now - dt.timedelta(days=conf.failed_days)
    for r in rows:
        if r["status"] == "failed" and (r["started"] is None or r["started"] <= failed_cutoff):
            _retire(ctx, r, f"gc: failed build older than {conf.failed_days} day(s)", dry_run, report, verb, transition)
    for req in expired:
        ctx.echo(f"{verb}expire debug build request {req['id']} ({req['requester']}, {req['package']} {req['ref']})")
        report["expired_requests"].append({k: req[k] for k in ("id", "package", "requester", "ref", "tags")}
                                          | {"expires_at": str(req["expires_at"])})
        if not dry_run:
            try:
                update_debug_request(req["id"], "expired", actor=GC_ACTOR, db=ctx.database())
            except RelmanError as exc:
                ctx.echo(f"warning: debug request {req['id']}: {exc}")
    report["message"] = (f"{verb}remove {len(report['removed_tags'])} tag(s), delete "
                         f"{len(report['deleted_manifests'])} manifest(s), retire {len(report['retired'])} row(s), "
                         f"expire {len(report['expired_requests'])} debug request(s)")
    ctx.echo(report["message"])
    write_summary(ctx, "gc", package, report)
    return report


def _retire(ctx, r, reason, dry_run, report, verb, transition):
    if r["status"] == "promoted" or r["promotions"]:
        return                                        # never, whatever the reason
    ctx.echo(f"{verb}retire image {r['id']} ({r['package']} {r['variant']} {r['status']}): {reason}")
    report["retired"].append({"image": r["id"], "package": r["package"], "variant": r["variant"],
                              "status": r["status"], "why": reason})
    if not dry_run:
        transition(r["id"], "retired", actor=GC_ACTOR, reason=reason, db=ctx.database())


def _expired_requests(ctx: Context, package: Optional[str], now: dt.datetime) -> List[Dict[str, Any]]:
    return _requests(ctx, package, now, expired=True)


def _active_requests(ctx: Context, package: Optional[str], now: dt.datetime) -> List[Dict[str, Any]]:
    return _requests(ctx, package, now, expired=False)


def _requests(ctx: Context, package: Optional[str], now: dt.datetime, expired: bool) -> List[Dict[str, Any]]:
    from release_manager.db.queries import open_debug_requests
    with ctx.database().read() as s:
        return open_debug_requests(s, package, now, expired)
