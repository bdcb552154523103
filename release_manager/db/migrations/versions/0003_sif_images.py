"""SIF images: the Apptainer images `relman sif` built from a pushed image, pinned by its digest; their
checksum, size, the Apptainer that built them, the signing key's fingerprint, and the ORAS reference
they were pushed to.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NAME, REF, SHA, URL = 128, 255, 80, 512


def upgrade() -> None:
    op.create_table(
        "sif_images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id", name="fk_sif_images_package"),
                  nullable=False),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_sif_images_image"), nullable=True),
        sa.Column("image_digest", sa.String(SHA), nullable=False),
        sa.Column("source", sa.String(URL), nullable=False),
        sa.Column("sha256", sa.String(SHA), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("apptainer_version", sa.String(64), nullable=False),
        sa.Column("signer", sa.String(SHA), nullable=True),
        sa.Column("registry_ref", sa.String(URL), nullable=True),
        sa.Column("registry_digest", sa.String(SHA), nullable=True),
        sa.Column("build_seconds", sa.Float(), nullable=True),
        sa.Column("created_by", sa.String(NAME), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_sif_images_image_digest", "sif_images", ["image_digest"])
    op.create_index("ix_sif_images_image", "sif_images", ["image_pk"])


def downgrade() -> None:
    op.drop_table("sif_images")      # its indexes go with it (MariaDB refuses to drop an index a foreign key uses)
