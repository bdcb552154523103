"""Reading the release database: the queries behind `relman images`, `relman history` and `relman audit`.
Each returns plain dicts (JSON-ready: times as ISO 8601 UTC strings)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Dict, List, Optional, Union

from sqlalchemy import case, func, select, union
from sqlalchemy.orm import Session

from release_manager.db.models import (AuditEvent, ChannelMove, DebugRequest, Image, ImageTag, Package, Promotion, SifImage,
                                       VerificationCheck, VerificationRun)
from release_manager.errors import NotFound, UsageError

HEX_ID = re.compile(r"^(sha256:)?[0-9a-f]{8,64}\Z")

LIST_COLUMNS = (Image.id, Package.name.label("package"), Image.variant, Image.target, Image.ref, Image.commit,
                Image.status, Image.repository, Image.tags, Image.digest, Image.image_id, Image.size,
                Image.build_key, Image.started, Image.finished, Image.requested_by, Image.build_url)


def iso(t: Optional[dt.datetime]) -> Optional[str]:
    return None if t is None else t.isoformat(timespec="seconds") + "Z"


def _row(r) -> Dict[str, Any]:
    d = dict(r._mapping)
    for k, v in d.items():
        if isinstance(v, dt.datetime):
            d[k] = iso(v)
    return d


# ---------------------------------------------------------------------- finding one image

def find_image(s: Session, ref: Union[int, str]) -> Image:
    """An image by row id, registry digest, image id (or a unique prefix of either, 8+ hex digits),
    [REPOSITORY:|PACKAGE:]TAG (the image that carried the tag last) or REPOSITORY@DIGEST."""
    text = str(ref).strip()
    if isinstance(ref, int) or text.isdigit():
        img = s.get(Image, int(text))
        if img is None:
            raise NotFound(f"image {text} not found: no image has row id {text} "
                           "(`relman images list` shows the ids)")
        return img
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if HEX_ID.match(text):
        full = text if text.startswith("sha256:") else "sha256:" + text
        hits = list(s.scalars(select(Image).where((Image.digest == full) | (Image.image_id == full))))
        if not hits and len(full) < 71:
            hits = list(s.scalars(select(Image).where(Image.digest.startswith(full) | Image.image_id.startswith(full))
                                  .limit(10)))
        if len(hits) > 1 and len({h.id for h in hits}) > 1:
            raise UsageError(f"{text} is ambiguous: it matches images {', '.join(str(h.id) for h in hits)}; "
                             "give more digits or the row id")
        if hits:
            return hits[0]
        raise NotFound(f"image {text} not found: no registry digest or image id is or starts with {full}")
    return _by_tag(s, text)


def _by_tag(s: Session, text: str) -> Image:
    owner, _, tag = text.rpartition(":")
    if "/" in tag:                       # host:port/repo without a tag
        owner, tag = "", text
    q = (select(Image, Package.name).join(ImageTag, ImageTag.image_pk == Image.id)
         .join(Package, Package.id == Image.package_id).where(ImageTag.tag == tag))
    searched = f"tag {tag!r} of every package"
    if owner:
        if "/" in owner:
            q = q.where(Image.repository == owner)
            searched = f"tag {tag!r} in repository {owner}"
        else:
            q = q.where(Package.name == owner)
            searched = f"tag {tag!r} of package {owner}"
    hits = s.execute(q.order_by(ImageTag.id.desc()).limit(50)).all()
    if not hits:
        raise NotFound(f"image {text!r} not found: searched {searched} (and it is not a row id or digest)")
    owners = sorted({(img.repository, pkg) for img, pkg in hits})
    if len(owners) > 1:
        raise UsageError(f"tag {tag!r} is ambiguous: " + ", ".join(f"{pkg}:{tag}" for _, pkg in owners) +
                         "; name the package (PACKAGE:TAG) or the repository")
    return hits[0][0]


# ---------------------------------------------------------------------- listing

def list_images(s: Session, package: Optional[str] = None, variant: Optional[str] = None,
                status: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    q = select(*LIST_COLUMNS).join(Package, Package.id == Image.package_id)
    if package:
        pkg_id = s.scalar(select(Package.id).where(Package.name == package))
        if pkg_id is None:
            raise NotFound(f"package {package!r} not found: no image of it was ever recorded")
        q = q.where(Image.package_id == pkg_id)
    if variant:
        q = q.where(Image.variant == variant)
    if status:
        q = q.where(Image.status == status)
    q = q.order_by(Image.started.desc(), Image.id.desc())
    if limit:
        q = q.limit(limit)
    return [_row(r) for r in s.execute(q)]


def image_detail(s: Session, ref: Union[int, str]) -> Dict[str, Any]:
    img = find_image(s, ref)
    d = _row(s.execute(select(*LIST_COLUMNS).join(Package, Package.id == Image.package_id)
                       .where(Image.id == img.id)).one())
    d.update(layers=img.layers, labels=img.labels, checks=img.checks, size_budget=img.size_budget,
             base_digest=img.base_digest, spec_hash=img.spec_hash, builder_host=img.builder_host,
             platform=img.platform, production_platform=img.production_platform,
             duration=img.duration, message=img.message, created_at=iso(img.created_at),
             all_tags=[t.tag for t in img.image_tags])
    m = img.manifest
    d["manifest"] = None if m is None else {"manager": m.manager, "package_count": m.package_count,
                                            "source_file": m.source_file, "packages": m.packages}
    d["verifications"] = _verifications(s, [img.id])
    d["promotions"] = _promotions(s, [img.id])
    d["sifs"] = sifs(s, img)
    from release_manager.db.farm import farm_runs_of_image   # farm.py reads iso() from here
    d["farm_runs"] = farm_runs_of_image(s, img.digest) if img.digest else []
    d["audit"] = [_audit_row(e, None) for e in s.scalars(
        select(AuditEvent).where(AuditEvent.entity == "image", AuditEvent.entity_id == img.id)
        .order_by(AuditEvent.id))]
    return d


def sifs(s: Session, img: Image) -> List[Dict[str, Any]]:
    """The SIFs built from an image: linked to its row, or made from its registry digest."""
    cond = SifImage.image_pk == img.id
    if img.digest:
        cond = cond | (SifImage.image_digest == img.digest)
    q = (select(SifImage.id, SifImage.image_digest, SifImage.source, SifImage.sha256, SifImage.size,
                SifImage.apptainer_version, SifImage.signer, SifImage.registry_ref, SifImage.registry_digest,
                SifImage.build_seconds, SifImage.created_by, SifImage.created_at)
         .where(cond).order_by(SifImage.id))
    return [_row(r) for r in s.execute(q)]


def sif_artifacts(s: Session, image_digest: str) -> List[Dict[str, Any]]:
    """The SIFs built from an image's registry digest that were pushed (an ORAS artifact to follow the
    image when it is promoted or deleted)."""
    q = (select(SifImage.id, SifImage.registry_ref, SifImage.registry_digest, SifImage.sha256)
         .where(SifImage.image_digest == image_digest, SifImage.registry_digest.is_not(None))
         .order_by(SifImage.id))
    return [_row(r) for r in s.execute(q)]


def sif_sources(s: Session, registry_digest: str) -> List[str]:
    """The image digests the SIF pushed as REGISTRY_DIGEST was built from (empty: not built by relman)."""
    return sorted(set(s.scalars(select(SifImage.image_digest).where(SifImage.registry_digest == registry_digest))))


def _verifications(s: Session, image_ids=None, package_id: Optional[int] = None) -> List[Dict[str, Any]]:
    q = (select(VerificationRun.id, VerificationRun.image_pk.label("image"), Image.variant, Image.ref,
                VerificationRun.reference, VerificationRun.workload, VerificationRun.verdict,
                VerificationRun.started, VerificationRun.finished, VerificationRun.report_location,
                VerificationRun.summary)
         .join(Image, Image.id == VerificationRun.image_pk))
    if package_id is not None:
        q = q.where(Image.package_id == package_id)
    else:
        q = q.where(VerificationRun.image_pk.in_(image_ids))
    rows = [_row(r) for r in s.execute(q.order_by(VerificationRun.started, VerificationRun.id))]
    if not rows:
        return rows
    counts = {}
    ids = [r["id"] for r in rows]
    for chunk in range(0, len(ids), 500):
        counts.update({c.run_id: (c.checks, int(c.failed or 0)) for c in s.execute(
            select(VerificationCheck.run_id, func.count().label("checks"),
                   func.sum(case((VerificationCheck.result != "pass", 1), else_=0)).label("failed"))
            .where(VerificationCheck.run_id.in_(ids[chunk:chunk + 500])).group_by(VerificationCheck.run_id))})
    for r in rows:
        r["checks"], r["failed_checks"] = counts.get(r["id"], (0, 0))
    if image_ids is not None:             # the check rows themselves only for one image's few runs
        for r in rows:
            r["check_rows"] = [_row(c) for c in s.execute(
                select(VerificationCheck.file, VerificationCheck.hdu, VerificationCheck.column,
                       VerificationCheck.test, VerificationCheck.statistic, VerificationCheck.p_value,
                       VerificationCheck.thresholds, VerificationCheck.result)
                .where(VerificationCheck.run_id == r["id"]).order_by(VerificationCheck.id))]
    return rows


def _promotions(s: Session, image_ids=None, package_id: Optional[int] = None) -> List[Dict[str, Any]]:
    q = (select(Promotion.id, Promotion.image_pk.label("image"), Image.variant, Promotion.from_tag,
                Promotion.to_tag, Promotion.promoted_by, Promotion.promoted_at, Promotion.reason)
         .join(Image, Image.id == Promotion.image_pk))
    q = q.where(Image.package_id == package_id) if package_id is not None else q.where(
        Promotion.image_pk.in_(image_ids))
    return [_row(r) for r in s.execute(q.order_by(Promotion.promoted_at, Promotion.id))]


def history(s: Session, package: str) -> Dict[str, Any]:
    """PACKAGE over time: its images, verification runs, promotions and debug requests."""
    pkg = s.scalar(select(Package).where(Package.name == package))
    if pkg is None:
        known = s.scalars(select(Package.name).order_by(Package.name).limit(20)).all()
        raise NotFound(f"package {package!r} not found in the release database"
                       + (f"; known packages: {', '.join(known)}" if known else " (it records no package yet)"))
    images = [_row(r) for r in s.execute(
        select(*LIST_COLUMNS).join(Package, Package.id == Image.package_id).where(Image.package_id == pkg.id)
        .order_by(Image.started, Image.id))]
    debug = [_row(r) for r in s.execute(
        select(DebugRequest.id, DebugRequest.requester, DebugRequest.ref, DebugRequest.status,
               DebugRequest.expires_at, DebugRequest.created_at, DebugRequest.image_pk.label("image"))
        .where(DebugRequest.package_id == pkg.id).order_by(DebugRequest.id))]
    sif_rows = [_row(r) for r in s.execute(
        select(SifImage.id, SifImage.image_pk.label("image"), SifImage.image_digest, SifImage.sha256, SifImage.size,
               SifImage.signer, SifImage.registry_ref, SifImage.created_by, SifImage.created_at)
        .where(SifImage.package_id == pkg.id).order_by(SifImage.id))]
    from release_manager.db.channels import channel_moves   # it imports this module
    from release_manager.db.farm import list_farm_runs
    return {"package": pkg.name, "images": images, "verifications": _verifications(s, package_id=pkg.id),
            "promotions": _promotions(s, package_id=pkg.id), "debug_requests": debug, "sifs": sif_rows,
            "farm_runs": list_farm_runs(s, package=pkg.name, limit=None),
            "channel_moves": channel_moves(s, pkg.name)[::-1]}


def timeline(h: Dict[str, Any]) -> List[Dict[str, Any]]:
    """history() as one list of events in time order (for the terminal)."""
    ev = []
    for i in h["images"]:
        ev.append({"at": i["started"] or "", "what": "build", "image": i["id"],
                   "text": f"{i['variant']:8} {i['ref']} {(i['commit'] or '')[:10]} {i['status']}"})
    for v in h["verifications"]:
        ev.append({"at": v["started"] or "", "what": "verify", "image": v["image"],
                   "text": f"{v['variant']:8} {v['workload']} vs {v['reference']}: {v['verdict']}"})
    for p in h["promotions"]:
        ev.append({"at": p["promoted_at"] or "", "what": "promote", "image": p["image"],
                   "text": f"{p['variant']:8} {p['from_tag'] or '-'} -> {p['to_tag']} by {p['promoted_by']}"
                           + (f" ({p['reason']})" if p["reason"] else "")})
    for d in h["debug_requests"]:
        ev.append({"at": d["created_at"] or "", "what": "debug", "image": d["image"],
                   "text": f"debug build of {d['ref']} for {d['requester']}: {d['status']}"})
    for f in h.get("sifs") or []:
        ev.append({"at": f["created_at"] or "", "what": "sif", "image": f["image"],
                   "text": f"SIF {f['sha256'][:19]} by {f['created_by']}, "
                           + ("signed" if f["signer"] else "unsigned")
                           + (f", pushed to {f['registry_ref']}" if f["registry_ref"] else "")})
    for m in h.get("channel_moves") or []:
        ev.append({"at": m["moved_at"] or "", "what": "channel", "image": m["image"],
                   "text": f"channel {m['channel']} -> {m['from_tag']} ({m['digest'][:19]}) by {m['moved_by']}"
                           + (f" ({m['reason']})" if m["reason"] else "")})
    for r in h.get("farm_runs") or []:
        ev.append({"at": r["submitted_at"] or "", "what": "farm", "image": r["image_row"],
                   "text": f"{r['kind']} job {r['job_id']} at {r['site']}, {r['tasks']} task(s): {r['state']}"})
    return sorted(ev, key=lambda e: e["at"])


# ---------------------------------------------------------------------- audit

def _audit_row(e: AuditEvent, package: Optional[str]) -> Dict[str, Any]:
    return {"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action, "entity": e.entity,
            "entity_id": e.entity_id, "package": package, "from": e.from_status, "to": e.to_status,
            "detail": e.detail}


def audit(s: Session, package: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    q = select(AuditEvent, Package.name).outerjoin(Package, Package.id == AuditEvent.package_id)
    if package:
        pkg_id = s.scalar(select(Package.id).where(Package.name == package))
        if pkg_id is None:
            raise NotFound(f"package {package!r} not found in the release database")
        q = q.where(AuditEvent.package_id == pkg_id)
    q = q.order_by(AuditEvent.id.desc())
    if limit:
        q = q.limit(limit)
    rows = [_audit_row(e, name) for e, name in s.execute(q)]
    return rows[::-1]


# ---------------------------------------------------------------------- for the workflows

def workflow_images(s: Session, package: Optional[str] = None, build_key: Optional[str] = None,
                    variant: Optional[str] = None) -> List[Dict[str, Any]]:
    """Images (with every tag they carried, their promotions and their latest verification verdict),
    oldest first; times stay datetimes (the workflows compare them)."""
    q = select(Image, Package.name).join(Package, Package.id == Image.package_id)
    if package:
        q = q.where(Package.name == package)
    if build_key:
        q = q.where(Image.build_key == build_key)
    if variant:
        q = q.where(Image.variant == variant)
    rows = []
    for img, pkg in s.execute(q.order_by(Image.id)):
        tags = [t.tag for t in s.scalars(select(ImageTag).where(ImageTag.image_pk == img.id).order_by(ImageTag.id))]
        promos = [{"to_tag": p.to_tag, "by": p.promoted_by, "at": p.promoted_at, "reason": p.reason}
                  for p in s.scalars(select(Promotion).where(Promotion.image_pk == img.id).order_by(Promotion.id))]
        last = s.scalars(select(VerificationRun).where(VerificationRun.image_pk == img.id)
                         .order_by(VerificationRun.id.desc()).limit(1)).first()
        rows.append({"id": img.id, "package": pkg, "variant": img.variant, "target": img.target,
                     "ref": img.ref, "commit": img.commit, "repository": img.repository,
                     "digest": img.digest, "image_id": img.image_id, "build_key": img.build_key,
                     "status": img.status, "tags": tags, "promotions": promos, "started": img.started,
                     "verdict": last.verdict if last else None, "requested_by": img.requested_by})
    return rows


def open_debug_requests(s: Session, package: Optional[str], now: dt.datetime, expired: bool) -> List[Dict[str, Any]]:
    """Debug-build requests not yet retired, expired before now (or not), oldest first."""
    q = (select(DebugRequest, Package.name).join(Package, Package.id == DebugRequest.package_id)
         .where(DebugRequest.expires_at < now if expired else DebugRequest.expires_at >= now,
                DebugRequest.status.in_(["requested", "building", "built"])))
    if package:
        q = q.where(Package.name == package)
    return [{"id": d.id, "package": name, "requester": d.requester, "ref": d.ref, "expires_at": d.expires_at,
             "status": d.status, "image": d.image_pk} for d, name in s.execute(q.order_by(DebugRequest.id))]


def table_counts(s: Session) -> Dict[str, int]:
    """Rows per table, for `relman db status`."""
    out = {}
    for name, m in (("packages", Package), ("images", Image), ("verification runs", VerificationRun),
                    ("promotions", Promotion), ("debug requests", DebugRequest), ("sif images", SifImage),
                    ("audit events", AuditEvent)):
        out[name] = s.scalar(select(func.count()).select_from(m)) or 0
    return out


# ---------------------------------------------------------------------- the status board

# what the board shows of each image (status.py, status_site.py): fewer columns than an image
# listing, and no join, because it reads every image of every package
BOARD_COLUMNS = (Image.id, Image.variant, Image.ref, Image.status, Image.tags, Image.digest, Image.size,
                 Image.started, Image.finished)


def status_board(s: Session, latest_only: bool = False, nightly_prefix: str = "nightly-2") -> Dict[str, Dict[str, Any]]:
    """history() of every recorded package, without check rows or debug requests, with the SIFs built
    from its images and where its channels point (`relman status`): six queries in all, however many
    packages and images.

    latest_only (the terminal view): only the images the board's row shows, picked by the database
    (the latest image of each variant that did not fail, the latest one carrying a tag that starts
    with nightly_prefix) and their verifications; the boards are marked "partial" (no history to plot)."""
    conn = s.connection()  # Core rows: the ORM adds nothing to plain column selects, and costs
    pkgs = {p.id: p.name for p in conn.execute(select(Package.id, Package.name))}
    out: Dict[str, Dict[str, Any]] = {name: {"package": name, "images": [], "verifications": [],
                                             "promotions": [], "sifs": [], "channels": {},
                                             "partial": latest_only} for name in pkgs.values()}
    images = select(*BOARD_COLUMNS, Image.package_id).order_by(Image.started, Image.id)
    runs = (select(VerificationRun.id, VerificationRun.image_pk.label("image"), Image.variant,
                   VerificationRun.verdict, VerificationRun.started, VerificationRun.finished,
                   VerificationRun.report_location, VerificationRun.workload)
            .join(Image, Image.id == VerificationRun.image_pk).order_by(VerificationRun.started, VerificationRun.id))
    if latest_only:
        shown = _shown_images(nightly_prefix)
        images = images.where(Image.id.in_(shown))
        runs = runs.where(VerificationRun.image_pk.in_(shown))
    owner: Dict[int, str] = {}
    for row in _plain_rows(conn.execute(images)):
        name = pkgs[row.pop("package_id")]
        owner[row["id"]] = name
        out[name]["images"].append(row)
    for v in _plain_rows(conn.execute(runs)):
        out[owner[v["image"]]]["verifications"].append(v)
    promos = (select(Promotion.id, Promotion.image_pk.label("image"), Image.variant, Promotion.from_tag,
                     Promotion.to_tag, Promotion.promoted_by, Promotion.promoted_at, Promotion.reason, Image.package_id)
              .join(Image, Image.id == Promotion.image_pk).order_by(Promotion.promoted_at, Promotion.id))
    for p in _plain_rows(conn.execute(promos)):
        out[pkgs[p.pop("package_id")]]["promotions"].append(p)
    sif_rows = (select(SifImage.id, SifImage.package_id, SifImage.image_pk.label("image"), SifImage.image_digest,
                       SifImage.size, SifImage.signer, SifImage.registry_ref, SifImage.created_at)
                .order_by(SifImage.id))
    for f in _plain_rows(conn.execute(sif_rows)):
        out[pkgs[f.pop("package_id")]]["sifs"].append(f)
    moves = (select(ChannelMove.channel, ChannelMove.package_id, ChannelMove.image_pk.label("image"), ChannelMove.digest,
                    ChannelMove.from_tag, ChannelMove.moved_by, ChannelMove.moved_at).order_by(ChannelMove.id))
    for m in _plain_rows(conn.execute(moves)):  # oldest first: the newest move of a channel is where it points
        out[pkgs[m.pop("package_id")]]["channels"][m["channel"]] = m
    return out


def _shown_images(nightly_prefix: str):
    """The ids of the images a board row shows, as a subquery: per package and variant the newest image
    that did not fail, and per package the newest image with a nightly tag (window functions: SQLite
    3.25+, MariaDB 10.2+, PostgreSQL)."""
    newest = (Image.started.desc(), Image.id.desc())
    per_variant = select(Image.id.label("iid"), func.row_number().over(
        partition_by=(Image.package_id, Image.variant), order_by=newest).label("rn")).where(
        Image.status != "failed").subquery()
    nightly = select(Image.id.label("iid"), func.row_number().over(
        partition_by=Image.package_id, order_by=newest).label("rn")).join(
        ImageTag, ImageTag.image_pk == Image.id).where(ImageTag.tag.like(nightly_prefix + "%")).subquery()
    return union(select(per_variant.c.iid).where(per_variant.c.rn == 1),
                 select(nightly.c.iid).where(nightly.c.rn == 1))


def _plain_rows(result) -> List[Dict[str, Any]]:
    """_row() for many rows: the time columns picked by name once, not every value tested (the board
    reads every image of every package)."""
    keys = list(result.keys())
    times = [i for i, k in enumerate(keys) if k in ("started", "finished", "promoted_at", "moved_at")]
    out = []
    for r in result.all():  # one fetchall, not a fetchone a row
        vals = list(r)
        for i in times:
            if vals[i] is not None:
                vals[i] = iso(vals[i])
        out.append(dict(zip(keys, vals)))
    return out
