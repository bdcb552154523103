"""The release database's tables (SQLAlchemy 2, typed declarative).

Times are naive UTC everywhere (MariaDB's DATETIME has no zone). JSON columns hold what the
build and verification documents carry as lists or objects. The schema itself is created only
by the Alembic migrations in release_manager/db/migrations; tests check the two agree.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, List, Optional

from sqlalchemy import (JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, event)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Lengths: MariaDB wants one on every VARCHAR, and an index key may hold 3072 bytes (768 utf8mb4 characters).
NAME = 128
REF = 255
SHA = 80            # "sha256:" + 64 hex digits
URL = 512


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON, Any: JSON}


class Package(Base):
    __tablename__ = "packages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SourceRevision(Base):
    __tablename__ = "source_revisions"
    __table_args__ = (UniqueConstraint("package_id", "ref", "commit", name="uq_source_revisions_identity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    ref: Mapped[str] = mapped_column(String(REF))
    commit: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    package: Mapped[Package] = relationship()


class Image(Base):
    """One image a build made (or tried to make). Its identity is (build_key, variant, identity):
    identity is the registry digest once pushed, else 'image:<image id>', else 'attempt:<start>'
    for a build that failed before it had an image."""
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("build_key", "variant", "identity", name="uq_images_identity"),
        Index("ix_images_package_started", "package_id", "started"),
        Index("ix_images_package_variant_status", "package_id", "variant", "status"),
        Index("ix_images_status", "status"),
        Index("ix_images_digest", "digest"),
        Index("ix_images_image_id", "image_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    revision_id: Mapped[Optional[int]] = mapped_column(ForeignKey("source_revisions.id"))
    variant: Mapped[str] = mapped_column(String(NAME))
    target: Mapped[str] = mapped_column(String(NAME))
    ref: Mapped[str] = mapped_column(String(REF))
    commit: Mapped[Optional[str]] = mapped_column(String(64))
    repository: Mapped[str] = mapped_column(String(REF))
    tags: Mapped[list] = mapped_column(JSON, default=list)
    identity: Mapped[str] = mapped_column(String(200))
    digest: Mapped[Optional[str]] = mapped_column(String(SHA))
    image_id: Mapped[Optional[str]] = mapped_column(String(SHA))
    size: Mapped[Optional[int]] = mapped_column(BigInteger)
    layers: Mapped[list] = mapped_column(JSON, default=list)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    checks: Mapped[list] = mapped_column(JSON, default=list)
    size_budget: Mapped[Optional[dict]] = mapped_column(JSON)
    build_key: Mapped[str] = mapped_column(String(SHA))
    base_digest: Mapped[Optional[str]] = mapped_column(String(SHA))
    spec_hash: Mapped[Optional[str]] = mapped_column(String(SHA))
    platform: Mapped[Optional[str]] = mapped_column(String(NAME))              # built on
    production_platform: Mapped[Optional[str]] = mapped_column(String(NAME))   # the spec's build_platform
    builder_host: Mapped[Optional[str]] = mapped_column(String(NAME))
    build_url: Mapped[Optional[str]] = mapped_column(String(URL))
    requested_by: Mapped[Optional[str]] = mapped_column(String(NAME))
    started: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    finished: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    duration: Mapped[Optional[float]] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    package: Mapped[Package] = relationship()
    revision: Mapped[Optional[SourceRevision]] = relationship()
    image_tags: Mapped[List["ImageTag"]] = relationship(back_populates="image", cascade="all, delete-orphan",
                                                        order_by="ImageTag.id")
    manifest: Mapped[Optional["PackageManifest"]] = relationship(back_populates="image", uselist=False)


class ImageTag(Base):
    """Every tag an image has carried (from the build, from promotions): the index behind `images show TAG`."""
    __tablename__ = "image_tags"
    __table_args__ = (UniqueConstraint("image_pk", "tag", name="uq_image_tags"), Index("ix_image_tags_tag", "tag"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("images.id"))
    tag: Mapped[str] = mapped_column(String(NAME))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    image: Mapped[Image] = relationship(back_populates="image_tags")


class PackageManifest(Base):
    """The OS package list the build wrote next to its result (<target>.packages.json)."""
    __tablename__ = "package_manifests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("images.id"), unique=True)
    manager: Mapped[Optional[str]] = mapped_column(String(32))
    source_file: Mapped[Optional[str]] = mapped_column(String(URL))
    package_count: Mapped[int] = mapped_column(Integer, default=0)
    packages: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    image: Mapped[Image] = relationship(back_populates="manifest")


class VerificationRun(Base):
    __tablename__ = "verification_runs"
    __table_args__ = (Index("ix_verification_runs_image", "image_pk", "started"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("images.id"))
    reference: Mapped[str] = mapped_column(String(REF))
    workload: Mapped[str] = mapped_column(String(NAME))
    verdict: Mapped[str] = mapped_column(String(32))
    started: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    finished: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    report_location: Mapped[Optional[str]] = mapped_column(String(URL))
    summary: Mapped[Optional[dict]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    image: Mapped[Image] = relationship()
    checks: Mapped[List["VerificationCheck"]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                                             order_by="VerificationCheck.id")


class VerificationCheck(Base):
    __tablename__ = "verification_checks"
    __table_args__ = (Index("ix_verification_checks_run", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("verification_runs.id"))
    file: Mapped[str] = mapped_column(String(URL))
    hdu: Mapped[Optional[str]] = mapped_column(String(NAME))          # FITS HDU or ROOT tree
    column: Mapped[Optional[str]] = mapped_column(String(NAME))
    test: Mapped[str] = mapped_column(String(64))
    statistic: Mapped[Optional[float]] = mapped_column(Float)
    p_value: Mapped[Optional[float]] = mapped_column(Float)
    thresholds: Mapped[Optional[dict]] = mapped_column(JSON)
    result: Mapped[str] = mapped_column(String(32))

    run: Mapped[VerificationRun] = relationship(back_populates="checks")


class Promotion(Base):
    __tablename__ = "promotions"
    __table_args__ = (Index("ix_promotions_image", "image_pk"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("images.id"))
    from_tag: Mapped[Optional[str]] = mapped_column(String(NAME))
    to_tag: Mapped[str] = mapped_column(String(NAME))
    promoted_by: Mapped[str] = mapped_column(String(NAME))
    promoted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reason: Mapped[Optional[str]] = mapped_column(Text)

    image: Mapped[Image] = relationship()


class ChannelMove(Base):
    """A channel (the spec's `channels`: a moving tag a pipeline runs from, e.g. L1's `l1`) set to a promoted
    image. The newest row of (package, channel) is where the channel points; the rows before it are its
    history (a rollback is a move back). previous_digest: what the registry tag held before the move."""
    __tablename__ = "channel_moves"
    __table_args__ = (Index("ix_channel_moves_channel", "package_id", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", name="fk_channel_moves_package"))
    channel: Mapped[str] = mapped_column(String(NAME))
    image_pk: Mapped[int] = mapped_column(ForeignKey("images.id", name="fk_channel_moves_image"))
    digest: Mapped[str] = mapped_column(String(SHA))
    previous_digest: Mapped[Optional[str]] = mapped_column(String(SHA))
    from_tag: Mapped[str] = mapped_column(String(NAME))        # the promoted tag the channel now equals
    moved_by: Mapped[str] = mapped_column(String(NAME))
    moved_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reason: Mapped[Optional[str]] = mapped_column(Text)

    package: Mapped[Package] = relationship()
    image: Mapped[Image] = relationship()


class DebugRequest(Base):
    __tablename__ = "debug_requests"
    __table_args__ = (Index("ix_debug_requests_package", "package_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requester: Mapped[str] = mapped_column(String(NAME))
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    ref: Mapped[str] = mapped_column(String(REF))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(32))
    image_pk: Mapped[Optional[int]] = mapped_column(ForeignKey("images.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    package: Mapped[Package] = relationship()


class SifImage(Base):
    """A SIF built by `relman sif` from a pushed image, pinned by that image's registry digest (image_pk is
    set when the release database knows the image). sha256/size are the final file's (signed, if signed);
    signer is the sha256 fingerprint of the signing public key; registry_ref the ORAS reference pushed to."""
    __tablename__ = "sif_images"
    __table_args__ = (Index("ix_sif_images_image_digest", "image_digest"), Index("ix_sif_images_image", "image_pk"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", name="fk_sif_images_package"))
    image_pk: Mapped[Optional[int]] = mapped_column(ForeignKey("images.id", name="fk_sif_images_image"))
    image_digest: Mapped[str] = mapped_column(String(SHA))
    source: Mapped[str] = mapped_column(String(URL))
    sha256: Mapped[str] = mapped_column(String(SHA))
    size: Mapped[int] = mapped_column(BigInteger)
    apptainer_version: Mapped[str] = mapped_column(String(64))
    signer: Mapped[Optional[str]] = mapped_column(String(SHA))
    registry_ref: Mapped[Optional[str]] = mapped_column(String(URL))
    registry_digest: Mapped[Optional[str]] = mapped_column(String(SHA))
    build_seconds: Mapped[Optional[float]] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(NAME))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    package: Mapped[Package] = relationship()
    image: Mapped[Optional[Image]] = relationship()


class FarmRun(Base):
    """A job relman submitted to a batch farm (`relman farm submit` or `farm scale-test`): where, under which
    scheduler job id, the image (and SIF) by digest, and who submitted it. image_pk/sif_pk/package_id are set
    when the release database knows the digest. state: submitted, then done or failed once collected
    (scale tests: passed or failed, their figures in summary)."""
    __tablename__ = "farm_runs"
    __table_args__ = (Index("ix_farm_runs_site_job", "site", "job_id"),
                      Index("ix_farm_runs_image_digest", "image_digest"),
                      Index("ix_farm_runs_submitted", "submitted_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(NAME))
    scheduler: Mapped[str] = mapped_column(String(16))
    runtime: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str] = mapped_column(String(64))
    job_name: Mapped[str] = mapped_column(String(NAME))
    kind: Mapped[str] = mapped_column(String(32))                 # submit | scale-test
    package_id: Mapped[Optional[int]] = mapped_column(ForeignKey("packages.id", name="fk_farm_runs_package"))
    image_pk: Mapped[Optional[int]] = mapped_column(ForeignKey("images.id", name="fk_farm_runs_image"))
    image_ref: Mapped[str] = mapped_column(String(URL))
    image_digest: Mapped[str] = mapped_column(String(SHA))
    sif_ref: Mapped[Optional[str]] = mapped_column(String(URL))
    sif_digest: Mapped[Optional[str]] = mapped_column(String(SHA))
    sif_pk: Mapped[Optional[int]] = mapped_column(ForeignKey("sif_images.id", name="fk_farm_runs_sif"))
    tasks: Mapped[int] = mapped_column(Integer)
    command: Mapped[list] = mapped_column(JSON)
    directory: Mapped[str] = mapped_column(String(URL))
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime)
    submitted_by: Mapped[str] = mapped_column(String(NAME))
    state: Mapped[str] = mapped_column(String(32))
    collected_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    summary: Mapped[Optional[dict]] = mapped_column(JSON)

    package: Mapped[Optional[Package]] = relationship()
    image: Mapped[Optional[Image]] = relationship()
    task_rows: Mapped[List["FarmTask"]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                                       order_by="FarmTask.task")


class FarmTask(Base):
    """One task of a farm run as the scheduler's accounting gave it (times naive UTC); queue/run/overhead
    seconds and verdict (pass, fail, error) are a scale test's."""
    __tablename__ = "farm_tasks"
    __table_args__ = (UniqueConstraint("run_id", "task", name="uq_farm_tasks"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("farm_runs.id", name="fk_farm_tasks_run"))
    task: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    exit_code: Mapped[Optional[int]] = mapped_column(Integer)
    host: Mapped[Optional[str]] = mapped_column(String(NAME))
    submitted: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    started: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    ended: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    queue_seconds: Mapped[Optional[float]] = mapped_column(Float)
    run_seconds: Mapped[Optional[float]] = mapped_column(Float)
    overhead_seconds: Mapped[Optional[float]] = mapped_column(Float)
    verdict: Mapped[Optional[str]] = mapped_column(String(32))
    detail: Mapped[Optional[str]] = mapped_column(Text)

    run: Mapped[FarmRun] = relationship(back_populates="task_rows")


class AuditEvent(Base):
    """Append-only: one row per state change. The ORM refuses updates and deletes; the migration
    adds triggers so the database refuses them too."""
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_package", "package_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(NAME))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[Optional[int]] = mapped_column(Integer)
    package_id: Mapped[Optional[int]] = mapped_column(ForeignKey("packages.id"))
    from_status: Mapped[Optional[str]] = mapped_column(String(32))
    to_status: Mapped[Optional[str]] = mapped_column(String(32))
    detail: Mapped[Optional[dict]] = mapped_column(JSON)


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _append_only(mapper, connection, target):
    raise RuntimeError("the audit log is append-only")
