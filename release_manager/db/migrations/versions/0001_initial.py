"""The first release database: packages, revisions, images and their tags and manifests,
verification runs and checks, promotions, debug-build requests, the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAME, REF, SHA, URL = 128, 255, 80, 512


def _created():
    return sa.Column("created_at", sa.DateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "packages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(NAME), nullable=False),
        _created(),
        sa.UniqueConstraint("name", name="uq_packages_name"),
    )
    op.create_table(
        "source_revisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id", name="fk_source_revisions_package"),
                  nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        _created(),
        sa.UniqueConstraint("package_id", "ref", "commit", name="uq_source_revisions_identity"),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id", name="fk_images_package"), nullable=False),
        sa.Column("revision_id", sa.Integer(), sa.ForeignKey("source_revisions.id", name="fk_images_revision"),
                  nullable=True),
        sa.Column("variant", sa.String(NAME), nullable=False),
        sa.Column("target", sa.String(NAME), nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("repository", sa.String(REF), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("identity", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(SHA), nullable=True),
        sa.Column("image_id", sa.String(SHA), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("layers", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("size_budget", sa.JSON(), nullable=True),
        sa.Column("build_key", sa.String(SHA), nullable=False),
        sa.Column("base_digest", sa.String(SHA), nullable=True),
        sa.Column("spec_hash", sa.String(SHA), nullable=True),
        sa.Column("builder_host", sa.String(NAME), nullable=True),
        sa.Column("build_url", sa.String(URL), nullable=True),
        sa.Column("requested_by", sa.String(NAME), nullable=True),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        _created(),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("build_key", "variant", "identity", name="uq_images_identity"),
    )
    op.create_index("ix_images_package_started", "images", ["package_id", "started"])
    op.create_index("ix_images_package_variant_status", "images", ["package_id", "variant", "status"])
    op.create_index("ix_images_status", "images", ["status"])
    op.create_index("ix_images_digest", "images", ["digest"])
    op.create_index("ix_images_image_id", "images", ["image_id"])
    op.create_table(
        "image_tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_image_tags_image"), nullable=False),
        sa.Column("tag", sa.String(NAME), nullable=False),
        _created(),
        sa.UniqueConstraint("image_pk", "tag", name="uq_image_tags"),
    )
    op.create_index("ix_image_tags_tag", "image_tags", ["tag"])
    op.create_table(
        "package_manifests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_package_manifests_image"),
                  nullable=False),
        sa.Column("manager", sa.String(32), nullable=True),
        sa.Column("source_file", sa.String(URL), nullable=True),
        sa.Column("package_count", sa.Integer(), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        _created(),
        sa.UniqueConstraint("image_pk", name="uq_package_manifests_image"),
    )
    op.create_table(
        "verification_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_verification_runs_image"),
                  nullable=False),
        sa.Column("reference", sa.String(REF), nullable=False),
        sa.Column("workload", sa.String(NAME), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.Column("report_location", sa.String(URL), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        _created(),
    )
    op.create_index("ix_verification_runs_image", "verification_runs", ["image_pk", "started"])
    op.create_table(
        "verification_checks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("verification_runs.id", name="fk_verification_checks_run"),
                  nullable=False),
        sa.Column("file", sa.String(URL), nullable=False),
        sa.Column("hdu", sa.String(NAME), nullable=True),
        sa.Column("column", sa.String(NAME), nullable=True),
        sa.Column("test", sa.String(64), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("thresholds", sa.JSON(), nullable=True),
        sa.Column("result", sa.String(32), nullable=False),
    )
    op.create_index("ix_verification_checks_run", "verification_checks", ["run_id"])
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_promotions_image"), nullable=False),
        sa.Column("from_tag", sa.String(NAME), nullable=True),
        sa.Column("to_tag", sa.String(NAME), nullable=False),
        sa.Column("promoted_by", sa.String(NAME), nullable=False),
        sa.Column("promoted_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_promotions_image", "promotions", ["image_pk"])
    op.create_table(
        "debug_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("requester", sa.String(NAME), nullable=False),
        sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id", name="fk_debug_requests_package"),
                  nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_debug_requests_image"),
                  nullable=True),
        _created(),
    )
    op.create_index("ix_debug_requests_package", "debug_requests", ["package_id", "status"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(NAME), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id", name="fk_audit_log_package"),
                  nullable=True),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_log_package", "audit_log", ["package_id", "id"])
    _append_only_triggers()


def _append_only_triggers() -> None:
    """The audit log refuses UPDATE and DELETE in the database itself, whoever connects."""
    dialect = op.get_bind().dialect.name
    msg = "audit_log is append-only"
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, '{msg}'); END")
    elif dialect == "postgresql":
        op.execute("CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN RAISE EXCEPTION '{msg}'; END $$")
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
    elif dialect in ("mysql", "mariadb"):
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log FOR EACH ROW "
                       f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{msg}'")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{verb}")
    for table in ("audit_log", "debug_requests", "promotions", "verification_checks", "verification_runs",
                  "package_manifests", "image_tags", "images", "source_revisions", "packages"):
        op.drop_table(table)
