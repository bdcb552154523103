"""Farm runs: every job relman submitted to a batch farm (site, scheduler, scheduler job id, the image and
SIF by digest, the tasks, who submitted it and when), and per task what the scheduler's accounting said
(state, exit code, submit/start/end) and, for scale tests, the comparison with the reference.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME, REF, SHA, URL = 128, 255, 80, 512


def upgrade() -> None:
    op.create_table(
        "farm_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site", sa.String(NAME), nullable=False),
        sa.Column("scheduler", sa.String(16), nullable=False),
        sa.Column("runtime", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("job_name", sa.String(NAME), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id", name="fk_farm_runs_package"),
                  nullable=True),
        sa.Column("image_pk", sa.Integer(), sa.ForeignKey("images.id", name="fk_farm_runs_image"), nullable=True),
        sa.Column("image_ref", sa.String(URL), nullable=False),
        sa.Column("image_digest", sa.String(SHA), nullable=False),
        sa.Column("sif_ref", sa.String(URL), nullable=True),
        sa.Column("sif_digest", sa.String(SHA), nullable=True),
        sa.Column("sif_pk", sa.Integer(), sa.ForeignKey("sif_images.id", name="fk_farm_runs_sif"), nullable=True),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("directory", sa.String(URL), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_by", sa.String(NAME), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("collected_at", sa.DateTime(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
    )
    op.create_index("ix_farm_runs_site_job", "farm_runs", ["site", "job_id"])
    op.create_index("ix_farm_runs_image_digest", "farm_runs", ["image_digest"])
    op.create_index("ix_farm_runs_submitted", "farm_runs", ["submitted_at"])
    op.create_table(
        "farm_tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("farm_runs.id", name="fk_farm_tasks_run"), nullable=False),
        sa.Column("task", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(NAME), nullable=True),
        sa.Column("submitted", sa.DateTime(), nullable=True),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("ended", sa.DateTime(), nullable=True),
        sa.Column("queue_seconds", sa.Float(), nullable=True),
        sa.Column("run_seconds", sa.Float(), nullable=True),
        sa.Column("overhead_seconds", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.UniqueConstraint("run_id", "task", name="uq_farm_tasks"),
    )


def downgrade() -> None:
    op.drop_table("farm_tasks")
    op.drop_table("farm_runs")       # their indexes go with them
