"""the trace context of the event that scheduled an evaluation, so the triggered decision's
trace continues the event's (adapters/telemetry.py); empty when tracing is off

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("due_evaluations") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("due_evaluations") as batch:
        batch.drop_column("trace_context")
