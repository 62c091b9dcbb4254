"""signals: the event store, feature state, debounced evaluations, outcomes; decision KPI columns

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DECISION_COLUMNS = [
    sa.Column('segment', sa.String(length=32), nullable=True),
    sa.Column('trigger', sa.String(length=64), nullable=True),
    sa.Column('signal_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('newest_event_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('features', sa.JSON(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('cpu_ms', sa.Float(), nullable=True),
]


def upgrade() -> None:
    # plain ADD COLUMN (not a batch copy): the append-only triggers on decisions stay in place
    for column in DECISION_COLUMNS:
        op.add_column('decisions', column)
    op.create_index('ix_decisions_created', 'decisions', ['created_at'])

    op.create_table('events',
        sa.Column('seq', BigId, autoincrement=True, nullable=False),
        sa.Column('event_id', sa.String(length=128), nullable=False),
        sa.Column('account_id', sa.String(length=128), nullable=False),
        sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('event_id', name='uq_events_event_id'),
    )
    op.create_index('ix_events_account', 'events', ['account_id', 'seq'])

    op.create_table('feature_state',
        sa.Column('account_id', sa.String(length=128), nullable=False),
        sa.Column('state', sa.JSON(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('last_seq', sa.BigInteger(), nullable=False),
        sa.Column('newest_event_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('account_id'),
    )

    op.create_table('due_evaluations',
        sa.Column('account_id', sa.String(length=128), nullable=False),
        sa.Column('flow', sa.String(length=64), nullable=False),
        sa.Column('trigger', sa.String(length=64), nullable=False),
        sa.Column('first_signal_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('newest_event_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
        sa.Column('events', sa.Integer(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('claimed_by', sa.String(length=128), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'flow'),
    )
    op.create_index('ix_due_evaluations_due', 'due_evaluations', ['due_at'])

    op.create_table('outcomes',
        sa.Column('id', sa.String(length=128), nullable=False),
        sa.Column('decision_id', sa.String(length=32), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('amount', sa.Float(), nullable=True),
        sa.Column('offer', sa.String(length=64), nullable=True),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('api_key_id', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['decision_id'], ['decisions.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_outcomes_decision', 'outcomes', ['decision_id'])
    op.create_index('ix_outcomes_occurred', 'outcomes', ['occurred_at'])
    _append_only(["events", "outcomes"])


def _append_only(tables) -> None:
    """The postsale_append_only() function comes from 0001."""
    dialect = op.get_bind().dialect.name
    for t in tables:
        if dialect == "postgresql":
            op.execute(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                       "FOR EACH ROW EXECUTE FUNCTION postsale_append_only()")
        elif dialect == "sqlite":
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                           f"BEGIN SELECT RAISE(ABORT, 'table {t} is append-only: record a new event instead'); END")


def downgrade() -> None:
    require_drop_column()
    op.drop_table('outcomes')
    op.drop_table('due_evaluations')
    op.drop_table('feature_state')
    op.drop_table('events')
    op.drop_index('ix_decisions_created', 'decisions')
    # plain DROP COLUMN (not a batch copy, which would drop the append-only triggers on decisions)
    for column in DECISION_COLUMNS:
        op.drop_column('decisions', column.name)


def require_drop_column() -> None:
    """SQLite drops a column in place from 3.35 on; an older one would need a table copy, which
    loses the triggers, so the downgrade stops instead of leaving columns a later upgrade re-adds."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    version = bind.exec_driver_sql("SELECT sqlite_version()").scalar()
    if tuple(int(x) for x in version.split(".")[:2]) < (3, 35):
        raise RuntimeError(f"downgrading needs SQLite 3.35 or later (ALTER TABLE ... DROP COLUMN); this is {version}")
