"""Channels: the moves of a package's moving tags (the spec's `channels`, e.g. L1's `l1`), each to a
promoted image, with who, when, why and what the tag held before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NAME, SHA = 128, 80


def upgrade() -> None:
    op.create_table(
        "channel_moves",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id", name="fk_channel_moves_package"),
                  nullable=False),
        sa.Column("channel", sa.String(NAME), nullable=False),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_channel_moves_image"), nullable=False),
        sa.Column("digest", sa.String(SHA), nullable=False),
        sa.Column("previous_digest", sa.String(SHA), nullable=True),
        sa.Column("from_tag", sa.String(NAME), nullable=False),
        sa.Column("moved_by", sa.String(NAME), nullable=False),
        sa.Column("moved_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_channel_moves_channel", "channel_moves", ["package_id", "channel"])


def downgrade() -> None:
    op.drop_table("channel_moves")
