"""Images record the platform they were built on and the spec's production platform: a build on the
local Debian stand-in for rhel7 is an explicit override, visible in the database, never silent.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as b:
        b.add_column(sa.Column("platform", sa.String(128), nullable=True))
        b.add_column(sa.Column("production_platform", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as b:
        b.drop_column("production_platform")
        b.drop_column("platform")
