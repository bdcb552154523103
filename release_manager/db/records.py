"""The recording API builds, verification and workflows call. Every function runs in one
transaction (Database.write), moves images only through lifecycle.check, and appends an audit
event for every change it makes.

    record_build(result_dict)               -> Outcome   idempotent on (build key, variant, digest)
    record_builds([ParsedResult...])        -> [Outcome] all or nothing
    transition(image, status, actor, reason)
    record_verification(image, reference=..., workload=..., verdict=..., checks=[...])
    record_promotion(image, to_tag, actor, reason)
    request_debug_build(requester, package, ref)
    record_sif(package, image_digest=..., source=..., sha256=..., size=..., apptainer_version=...)
`image` is anything `find_image` understands: a row id, a digest, an image id or a tag.
"""
from __future__ import annotations

import datetime as dt
import getpass
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from sqlalchemy import select
from sqlalchemy.orm import Session

from release_manager.db import lifecycle
from release_manager.db.connection import Database
from release_manager.db.models import (AuditEvent, DebugRequest, Image, ImageTag, Package, PackageManifest,
                                       Promotion, SifImage, SourceRevision, VerificationCheck, VerificationRun, utcnow)
from release_manager.db.queries import find_image
from release_manager.db.results import ParsedResult, parse_result, parse_time
from release_manager.errors import NotFound, UsageError

ImageRef = Union[int, str, Image]
VERDICTS = {"passed": lifecycle.VERIFIED, "failed": lifecycle.VERIFICATION_FAILED,
            "error": lifecycle.VERIFICATION_FAILED}
CHECK_RESULTS = ("pass", "fail", "skip", "error")
DEBUG_STATES = ("requested", "building", "built", "failed", "expired", "cancelled")


def default_actor() -> str:
    for var in ("RELMAN_ACTOR", "BUILD_USER_ID"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return "unknown"


@dataclass
class Outcome:
    image: int                  # the images.id row
    status: str
    action: str                 # created | updated | unchanged
    source: str = ""

    @property
    def created(self) -> bool:
        return self.action == "created"

    def as_dict(self):
        return dict(self.__dict__)


def _db(db: Optional[Database]) -> Database:
    if db is not None:
        return db
    from release_manager.config import load_settings
    from release_manager.db.connection import for_settings
    return for_settings(load_settings())


# ---------------------------------------------------------------------- helpers inside a transaction

def _audit(s: Session, actor: str, action: str, entity: str, entity_id: Optional[int], package_id: Optional[int],
           from_status: Optional[str] = None, to_status: Optional[str] = None, **detail) -> None:
    s.add(AuditEvent(at=utcnow(), actor=actor, action=action, entity=entity, entity_id=entity_id,
                     package_id=package_id, from_status=from_status, to_status=to_status,
                     detail={k: v for k, v in detail.items() if v is not None} or None))


def _package(s: Session, name: str, actor: str) -> Package:
    pkg = s.scalar(select(Package).where(Package.name == name))
    if pkg is None:
        pkg = Package(name=name, created_at=utcnow())
        s.add(pkg)
        s.flush()                      # a concurrent insert fails here: Database.write runs us again
        _audit(s, actor, "create-package", "package", pkg.id, pkg.id, name=name)
    return pkg


def _revision(s: Session, pkg: Package, ref: str, commit: str) -> SourceRevision:
    rev = s.scalar(select(SourceRevision).where(SourceRevision.package_id == pkg.id, SourceRevision.ref == ref,
                                                SourceRevision.commit == commit))
    if rev is None:
        rev = SourceRevision(package_id=pkg.id, ref=ref, commit=commit, created_at=utcnow())
        s.add(rev)
        s.flush()
    return rev


def _add_tags(s: Session, img: Image, tags: Iterable[str]) -> List[str]:
    have = {t.tag for t in img.image_tags}
    new = [t for t in dict.fromkeys(tags) if t not in have]
    for t in new:
        img.image_tags.append(ImageTag(tag=t, created_at=utcnow()))
    if new:
        img.tags = list(img.tags or []) + [t for t in new if t not in (img.tags or [])]
    return new


def _move(s: Session, img: Image, new: str, actor: str, reason: Optional[str] = None, action: str = "transition",
          explicit: bool = False, **detail) -> None:
    """The only place an existing image's status changes."""
    lifecycle.check(img.status, new, explicit=explicit, reason=reason,
                    what=f"image {img.id} ({img.repository}:{(img.tags or ['?'])[0]}, {img.status})")
    old = img.status
    img.status = new
    img.updated_at = utcnow()
    _audit(s, actor, action, "image", img.id, img.package_id, old, new, reason=reason, **detail)


def _walk(s: Session, img: Image, target: str, actor: str, action: str, **detail) -> None:
    """Move through every intermediate state to `target` (a result can report several steps at once)."""
    steps = lifecycle.path(img.status, target)
    if not steps:
        lifecycle.check(img.status, target)      # raises the clear message
    for st in steps:
        _move(s, img, st, actor, action=action, **detail)


def _dialect(s: Session) -> str:
    """The session's database kind (row locks: SQLite has none, its writer holds the whole file)."""
    return s.get_bind().dialect.name


def _resolve(s: Session, image: ImageRef, lock: bool = True) -> Image:
    if isinstance(image, Image):
        image = image.id
    img = find_image(s, image)
    if lock and _dialect(s) != "sqlite":
        s.refresh(img, with_for_update=True)
    return img


# ---------------------------------------------------------------------- builds

def _fill(img: Image, d, status: str, requested_by: Optional[str]) -> None:
    img.variant, img.target, img.ref, img.commit = d.variant, d.target, d.ref, d.commit
    img.repository, img.identity, img.build_key = d.repository, d.identity, d.build_key
    img.digest, img.image_id, img.size = d.digest, d.image_id, d.size
    img.layers, img.labels = json_safe(d.layers), d.labels
    img.checks, img.size_budget = json_safe(d.checks), json_safe(d.size_budget)
    img.base_digest, img.spec_hash = d.base_digest, d.spec_hash
    img.platform, img.production_platform = d.platform, d.production_platform
    img.builder_host, img.build_url = d.builder_host or None, d.build_url
    img.started, img.finished, img.duration, img.message = d.started, d.finished, d.duration, d.message or None
    if requested_by:
        img.requested_by = requested_by
    if img.tags is None:
        img.tags = []


def _record_one(s: Session, r: ParsedResult, actor: str, requested_by: Optional[str]) -> Outcome:
    d = r.doc
    status = d.image_status
    pkg = _package(s, d.package, actor)
    rev = _revision(s, pkg, d.ref, d.commit)
    q = select(Image).where(Image.build_key == d.build_key, Image.variant == d.variant)
    if _dialect(s) != "sqlite":
        q = q.with_for_update()
    same = s.scalar(q.where(Image.identity == d.identity))
    if same is not None:
        new_tags = _add_tags(s, same, d.tags)
        if new_tags:
            _audit(s, actor, "add-tags", "image", same.id, pkg.id, tags=new_tags, source=r.source)
        return Outcome(same.id, same.status, "updated" if new_tags else "unchanged", r.source)
    if not d.digest and d.image_id:        # this image's local result, arriving after its push was recorded
        pushed = s.scalar(q.where(Image.image_id == d.image_id, Image.digest.is_not(None)).order_by(Image.id))
        if pushed is not None:
            new_tags = _add_tags(s, pushed, d.tags)
            if new_tags:
                _audit(s, actor, "add-tags", "image", pushed.id, pkg.id, tags=new_tags, source=r.source)
            return Outcome(pushed.id, pushed.status, "updated" if new_tags else "unchanged", r.source)
    # the same image recorded before it was pushed: it becomes pushed now
    earlier = None
    if d.digest and d.image_id:
        earlier = s.scalar(q.where(Image.identity == f"image:{d.image_id}"))
    # a workflow's placeholder (requested or building) for this package, variant and Jenkins build
    if earlier is None and d.build_url:
        earlier = s.scalar(select(Image).where(
            Image.package_id == pkg.id, Image.variant == d.variant, Image.build_url == d.build_url,
            Image.status.in_([lifecycle.REQUESTED, lifecycle.BUILDING])).order_by(Image.id))
    if earlier is not None:
        _walk(s, earlier, status, actor, "record-build", source=r.source)
        _fill(earlier, d, status, requested_by)
        earlier.revision_id = rev.id
        _add_tags(s, earlier, d.tags)
        _manifest(s, earlier, r)
        return Outcome(earlier.id, earlier.status, "updated", r.source)
    lifecycle.check(None, status)
    img = Image(package_id=pkg.id, revision_id=rev.id, status=status, created_at=utcnow(), updated_at=utcnow(),
                tags=[])
    _fill(img, d, status, requested_by)
    s.add(img)
    s.flush()                            # the unique identity decides the winner of a race here
    _add_tags(s, img, d.tags)
    _manifest(s, img, r)
    _audit(s, actor, "record-build", "image", img.id, pkg.id, None, status, source=r.source,
           build_url=d.build_url, digest=d.digest)
    return Outcome(img.id, status, "created", r.source)


def _manifest(s: Session, img: Image, r: ParsedResult) -> None:
    if r.manifest is None or img.manifest is not None:
        return
    pk = r.manifest["packages"]
    s.add(PackageManifest(image_pk=img.id, manager=r.manifest.get("manager"), source_file=r.manifest_file,
                          package_count=len(pk), packages=pk, created_at=utcnow()))


def record_builds(results: Sequence[ParsedResult], db: Optional[Database] = None, actor: Optional[str] = None,
                  requested_by: Optional[str] = None) -> List[Outcome]:
    """Record checked results in one transaction: all of them or none."""
    actor = actor or default_actor()
    return _db(db).write(lambda s: [_record_one(s, r, actor, requested_by) for r in results])


def record_build(result: Dict[str, Any], db: Optional[Database] = None, actor: Optional[str] = None,
                 requested_by: Optional[str] = None, source: str = "<result>") -> Outcome:
    """Record one BuildResult.as_dict() document. Recording it again changes nothing (action 'unchanged');
    of several processes recording it at once exactly one gets action 'created'."""
    return record_builds([parse_result(result, source)], db, actor, requested_by)[0]


def create_image_request(package: str, ref: str, variant: str, repository: str, build_url: Optional[str] = None,
                         requested_by: Optional[str] = None, db: Optional[Database] = None,
                         actor: Optional[str] = None) -> Outcome:
    """A placeholder for an image a workflow asked for (status requested); record_build fills it in when the
    result arrives with the same package, variant and build URL."""
    import uuid
    actor = actor or default_actor()

    def do(s: Session) -> Outcome:
        pkg = _package(s, package, actor)
        img = Image(package_id=pkg.id, variant=variant, target=variant, ref=ref, repository=repository,
                    identity=f"pending:{uuid.uuid4().hex}", build_key="pending", status=lifecycle.REQUESTED,
                    build_url=build_url, requested_by=requested_by or actor, tags=[], layers=[], labels={},
                    checks=[], created_at=utcnow(), updated_at=utcnow())
        s.add(img)
        s.flush()
        _audit(s, actor, "request-image", "image", img.id, pkg.id, None, lifecycle.REQUESTED, ref=ref,
               variant=variant, build_url=build_url)
        return Outcome(img.id, img.status, "created")
    return _db(db).write(do)


# ---------------------------------------------------------------------- lifecycle

def transition(image: ImageRef, new_status: str, actor: Optional[str] = None, reason: Optional[str] = None,
               explicit: bool = False, db: Optional[Database] = None) -> Outcome:
    """Move an image to new_status if the lifecycle allows it (IllegalTransition, exit 2, if not).
    Retiring a promoted image needs explicit=True and a reason."""
    actor = actor or default_actor()

    def do(s: Session) -> Outcome:
        img = _resolve(s, image)
        if img.status == new_status:
            return Outcome(img.id, img.status, "unchanged")
        _move(s, img, new_status, actor, reason, explicit=explicit)
        return Outcome(img.id, img.status, "updated")
    return _db(db).write(do)


# ---------------------------------------------------------------------- verification

def _check_row(c: Dict[str, Any], i: int) -> Dict[str, Any]:
    try:
        result = str(c["result"]).lower()
        if result not in CHECK_RESULTS:
            raise UsageError(f"verification check {i}: field 'result': {c['result']!r} is not one of "
                             f"{', '.join(CHECK_RESULTS)}")
        return dict(
            file=str(c["file"]), hdu=_opt_str(c.get("hdu", c.get("tree"))), column=_opt_str(c.get("column")),
            test=str(c["test"]), statistic=_opt_float(c.get("statistic")), p_value=_opt_float(c.get("p_value")),
            thresholds=json_safe(c.get("thresholds")), result=result)
    except KeyError as exc:
        raise UsageError(f"verification check {i}: field {exc.args[0]!r} is missing") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"verification check {i}: {exc}") from None


def _opt_str(v):
    return None if v is None else str(v)


def _opt_float(v):
    """A float the three databases all store: NaN and infinities (MariaDB refuses them) become None."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def json_safe(obj):
    """obj with NaN and infinite floats replaced by None (strict JSON; PostgreSQL refuses NaN tokens)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def record_verification(image: ImageRef, *, reference: str, workload: str, verdict: str,
                        checks: Sequence[Dict[str, Any]] = (), started=None, finished=None,
                        report_location: Optional[str] = None, summary: Optional[Dict[str, Any]] = None,
                        actor: Optional[str] = None, db: Optional[Database] = None) -> int:
    """Record a verification run and its checks; the image goes (through verifying) to verified or
    verification-failed. verdict: passed | failed | error. Returns the run's id."""
    actor = actor or default_actor()
    if verdict not in VERDICTS:
        raise UsageError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    rows = [_check_row(c, i) for i, c in enumerate(checks)]
    try:
        t0, t1 = parse_time(started), parse_time(finished)
    except ValueError as exc:
        raise UsageError(f"verification of {image}: {exc}") from None

    def do(s: Session) -> int:
        img = _resolve(s, image)
        if img.status != lifecycle.VERIFYING:
            _move(s, img, lifecycle.VERIFYING, actor, action="verify", reference=reference, workload=workload)
        run = VerificationRun(image_pk=img.id, reference=reference, workload=workload, verdict=verdict,
                              started=t0, finished=t1, report_location=report_location, summary=json_safe(summary),
                              created_at=utcnow())
        run.checks = [VerificationCheck(**r) for r in rows]
        s.add(run)
        s.flush()
        _move(s, img, VERDICTS[verdict], actor, action="verify", run=run.id, verdict=verdict,
              checks=len(rows), failed=sum(r["result"] != "pass" for r in rows))
        return run.id
    return _db(db).write(do)


# ---------------------------------------------------------------------- promotion

def record_promotion(image: ImageRef, to_tag: str, actor: Optional[str] = None, reason: Optional[str] = None,
                     from_tag: Optional[str] = None, db: Optional[Database] = None) -> int:
    """Record that a verified image now carries to_tag (a release or a moving alias). A promoted image
    may be promoted again (another tag). Returns the promotion's id."""
    from release_manager.tags import check_tag
    actor = actor or default_actor()
    check_tag(to_tag)

    def do(s: Session) -> int:
        img = _resolve(s, image)
        if img.status != lifecycle.PROMOTED:
            _move(s, img, lifecycle.PROMOTED, actor, reason, action="promote", to_tag=to_tag)
        else:
            _audit(s, actor, "promote", "image", img.id, img.package_id, img.status, img.status, reason=reason,
                   to_tag=to_tag)
        p = Promotion(image_pk=img.id, from_tag=from_tag or (img.tags or [None])[0], to_tag=to_tag,
                      promoted_by=actor, promoted_at=utcnow(), reason=reason)
        s.add(p)
        _add_tags(s, img, [to_tag])
        s.flush()
        return p.id
    return _db(db).write(do)


# ---------------------------------------------------------------------- SIF images

def record_sif(package: str, *, image_digest: str, source: str, sha256: str, size: int, apptainer_version: str,
               signer: Optional[str] = None, registry_ref: Optional[str] = None,
               registry_digest: Optional[str] = None, build_seconds: Optional[float] = None,
               actor: Optional[str] = None, db: Optional[Database] = None) -> int:
    """Record a SIF built from the image with registry digest image_digest (linked to its images row when
    the database knows that digest). Returns the sif_images row id."""
    actor = actor or default_actor()
    for name, v in (("image_digest", image_digest), ("sha256", sha256)):
        if not (isinstance(v, str) and v.startswith("sha256:") and len(v) == 71):
            raise UsageError(f"SIF of {package}: {name} {v!r} is not sha256:<64 hex digits>")
    if not isinstance(size, int) or size <= 0:
        raise UsageError(f"SIF of {package}: size {size!r} is not a positive number of bytes")

    def do(s: Session) -> int:
        pkg = _package(s, package, actor)
        img = s.scalar(select(Image).where(Image.digest == image_digest, Image.package_id == pkg.id)
                       .order_by(Image.id.desc()).limit(1))
        row = SifImage(package_id=pkg.id, image_pk=img.id if img else None, image_digest=image_digest,
                       source=source, sha256=sha256, size=size, apptainer_version=apptainer_version, signer=signer,
                       registry_ref=registry_ref, registry_digest=registry_digest, build_seconds=build_seconds,
                       created_by=actor, created_at=utcnow())
        s.add(row)
        s.flush()
        _audit(s, actor, "build-sif", "sif", row.id, pkg.id, image=img.id if img else None,
               image_digest=image_digest, sha256=sha256, signed=bool(signer), registry_ref=registry_ref)
        return row.id
    return _db(db).write(do)


# ---------------------------------------------------------------------- debug builds

def request_debug_build(requester: str, package: str, ref: str, expires_in: dt.timedelta = dt.timedelta(days=14),
                        expires_at: Optional[dt.datetime] = None, actor: Optional[str] = None,
                        db: Optional[Database] = None) -> int:
    """Record a request for a debug build of package at ref; returns the request's id."""
    from release_manager.tags import check_requester
    check_requester(requester)
    actor = actor or requester
    until = (parse_time(expires_at) if expires_at else None) or utcnow() + expires_in
    if until <= utcnow():
        raise UsageError(f"debug build request for {package} {ref}: expiry {until:%Y-%m-%d %H:%M} is in the past")

    def do(s: Session) -> int:
        pkg = _package(s, package, actor)
        req = DebugRequest(requester=requester, package_id=pkg.id, ref=ref, expires_at=until, status="requested",
                           created_at=utcnow())
        s.add(req)
        s.flush()
        _audit(s, actor, "request-debug-build", "debug_request", req.id, pkg.id, None, "requested", ref=ref,
               requester=requester, expires_at=until.isoformat())
        return req.id
    return _db(db).write(do)


_DEBUG_NEXT = {"requested": {"building", "failed", "expired", "cancelled"},
               "building": {"built", "failed", "expired", "cancelled"},
               "built": {"expired", "cancelled"}, "failed": set(), "expired": set(), "cancelled": set()}


def update_debug_request(request_id: int, status: str, image: Optional[ImageRef] = None,
                         actor: Optional[str] = None, db: Optional[Database] = None) -> str:
    actor = actor or default_actor()
    if status not in DEBUG_STATES:
        raise UsageError(f"debug request status {status!r} is not one of {', '.join(DEBUG_STATES)}")

    def do(s: Session) -> str:
        req = s.get(DebugRequest, request_id)
        if req is None:
            raise NotFound(f"debug build request {request_id} not found")
        if status not in _DEBUG_NEXT[req.status]:
            raise lifecycle.IllegalTransition(f"debug build request {request_id}: cannot go from {req.status} to "
                                              f"{status}")
        old, req.status = req.status, status
        if image is not None:
            req.image_pk = _resolve(s, image, lock=False).id
        _audit(s, actor, "debug-request", "debug_request", req.id, req.package_id, old, status)
        return status
    return _db(db).write(do)


# ---------------------------------------------------------------------- audit events and overrides

def record_audit_event(action: str, package: Optional[str], detail: Dict[str, Any], entity: str = "package",
                       entity_id: Optional[int] = None, actor: Optional[str] = None,
                       db: Optional[Database] = None) -> None:
    """An audit event for something that changes no row of its own (a skipped nightly, a gc run)."""
    def do(s: Session) -> None:
        pkg_id = s.scalar(select(Package.id).where(Package.name == package)) if package else None
        s.add(AuditEvent(at=utcnow(), actor=actor or default_actor(), action=action, entity=entity,
                         entity_id=entity_id if entity_id is not None else pkg_id, package_id=pkg_id,
                         detail={k: v for k, v in detail.items() if v is not None} or None))
    _db(db).write(do)


def record_override_promotion(image_pk: int, from_tag: str, to_tag: str, by: str, reason: str,
                              verdict: Optional[str], db: Optional[Database] = None) -> int:
    """An unverified image promoted on a person's word: the promotion and its tag are recorded, its status
    stays what the science says (the lifecycle allows promoted only from verified), and the override is
    in the audit log with the reason. Returns the promotion's id."""
    def do(s: Session) -> int:
        img = s.get(Image, image_pk)
        if img is None:
            raise NotFound(f"image {image_pk} not found")
        p = Promotion(image_pk=img.id, from_tag=from_tag, to_tag=to_tag, promoted_by=by, promoted_at=utcnow(),
                      reason=reason)
        s.add(p)
        if s.scalar(select(ImageTag.id).where(ImageTag.image_pk == img.id, ImageTag.tag == to_tag)) is None:
            s.add(ImageTag(image_pk=img.id, tag=to_tag, created_at=utcnow()))
            img.tags = list(img.tags or []) + [to_tag]
        s.flush()
        s.add(AuditEvent(at=utcnow(), actor=by, action="promote-override", entity="image", entity_id=img.id,
                         package_id=img.package_id, from_status=img.status, to_status=img.status,
                         detail={"to_tag": to_tag, "from_tag": from_tag, "reason": reason, "digest": img.digest,
                                 "promotion": p.id, "verdict": verdict}))
        return p.id
    return _db(db).write(do)
