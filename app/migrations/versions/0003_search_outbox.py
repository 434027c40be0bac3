"""index_outbox: pending search-index changes, written with the task's completion

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "index_outbox",
        sa.Column("task_id", sa.String(32), primary_key=True),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_index_outbox_due", "index_outbox", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_index_outbox_due", table_name="index_outbox")
    op.drop_table("index_outbox")
