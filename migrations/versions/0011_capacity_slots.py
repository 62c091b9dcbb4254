"""human capacity: slots used per queue and period, shared by every worker and host

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capacity_slots",
        sa.Column("queue", sa.String(64), primary_key=True),
        sa.Column("period", sa.String(32), primary_key=True),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("mandatory", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("capacity_slots")
