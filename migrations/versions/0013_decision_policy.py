"""decisions: the arm (holdout, explore, exploit) and the propensity of the recorded plan

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


COLUMNS = (sa.Column("arm", sa.String(16), nullable=True), sa.Column("propensity", sa.Float, nullable=True))


def upgrade() -> None:
    # plain ADD COLUMN (not a batch copy): the append-only triggers on decisions stay in place
    for column in COLUMNS:
        op.add_column("decisions", column)
    op.create_index("ix_decisions_arm", "decisions", ["flow", "arm", "created_at"])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = bind.exec_driver_sql("SELECT sqlite_version()").scalar()
        if tuple(int(x) for x in version.split(".")[:2]) < (3, 35):
            raise RuntimeError(f"downgrading needs SQLite 3.35 or later (ALTER TABLE ... DROP COLUMN); this is {version}")
    op.drop_index("ix_decisions_arm", "decisions")
    for column in COLUMNS:
        op.drop_column("decisions", column.name)
