"""rollouts: a flow's candidate ruleset version (shadow or canary) and every step taken with it;
decisions: what the shadow candidate would have planned

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
COLUMNS = (sa.Column("shadow_version", sa.String(32), nullable=True),
           sa.Column("shadow_changed", sa.Boolean, nullable=True),
           sa.Column("shadow_plan", sa.JSON, nullable=True))


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.Column("share", sa.Float, nullable=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("sources", sa.JSON, nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rollouts_flow", "rollouts", ["flow", "id"])
    # plain ADD COLUMN (not a batch copy): the append-only triggers on decisions stay in place
    for column in COLUMNS:
        op.add_column("decisions", column)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = bind.exec_driver_sql("SELECT sqlite_version()").scalar()
        if tuple(int(x) for x in version.split(".")[:2]) < (3, 35):
            raise RuntimeError(f"downgrading needs SQLite 3.35 or later (ALTER TABLE ... DROP COLUMN); this is {version}")
    for column in COLUMNS:
        op.drop_column("decisions", column.name)
    op.drop_index("ix_rollouts_flow", "rollouts")
    op.drop_table("rollouts")
