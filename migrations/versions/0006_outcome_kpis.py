"""KPIs: the kind of the offer an outcome names, the hash of the request that recorded it, and
per-decision counts read once from the decision's result

Revision ID: 0006
Revises: 0005

* `outcomes.offer_kind` is copied from the decision's offer when the outcome is recorded
  (adapters/store/outcomes.py), so the upgrade win rate needs no JSON per decision.
* `outcomes.request_hash` makes a repeated outcome id an idempotent replay (same body) or a
  conflict (another body).
* `decision_kpis` holds, per decision, the number of offers, guardrail adjustments
  (violations caught) and blocked offers of its result. A database trigger fills it in the
  decision's own INSERT, whoever writes the decision, so no application code fills it and it can
  never be missing or stale (decisions are append-only); this migration fills it for the
  decisions already recorded. KPI queries read these small rows instead of parsing every
  decision's result JSON (docs/kpis.md, "How it scales").
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COUNTS = (("offers", "offers"), ("violations", "adjustments"), ("blocked", "blocked"))


def _pg(source: str, key: str) -> str:
    return (f"CASE WHEN json_typeof({source} -> '{key}') = 'array' "
            f"THEN json_array_length({source} -> '{key}') ELSE 0 END")


def _sqlite(source: str, key: str) -> str:
    return (f"CASE WHEN json_type({source}, '$.{key}') = 'array' "
            f"THEN json_array_length({source}, '$.{key}') ELSE 0 END")


def upgrade() -> None:
    # plain ADD COLUMN (not a batch copy): the append-only triggers on outcomes stay in place
    op.add_column('outcomes', sa.Column('offer_kind', sa.String(length=32), nullable=True))
    op.add_column('outcomes', sa.Column('request_hash', sa.String(length=64), nullable=True))
    op.create_index('ix_outcomes_type_decision', 'outcomes', ['type', 'decision_id'])

    op.create_table('decision_kpis',
        sa.Column('decision_id', sa.String(length=32), nullable=False),
        sa.Column('offers', sa.Integer(), nullable=False),
        sa.Column('violations', sa.Integer(), nullable=False),
        sa.Column('blocked', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['decision_id'], ['decisions.id']),
        sa.PrimaryKeyConstraint('decision_id'),
    )
    names = ", ".join(n for n, _ in COUNTS)
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        values = ", ".join(_pg("NEW.result", key) for _, key in COUNTS)
        op.execute(f"""
CREATE OR REPLACE FUNCTION postsale_decision_kpis() RETURNS trigger AS $$
BEGIN
  INSERT INTO decision_kpis (decision_id, {names}) VALUES (NEW.id, {values});
  RETURN NULL;
END $$ LANGUAGE plpgsql""")
        op.execute("CREATE TRIGGER decisions_kpis AFTER INSERT ON decisions "
                   "FOR EACH ROW EXECUTE FUNCTION postsale_decision_kpis()")
        backfill = ", ".join(_pg("result", key) for _, key in COUNTS)
    else:
        values = ", ".join(_sqlite("NEW.result", key) for _, key in COUNTS)
        op.execute(f"CREATE TRIGGER decisions_kpis AFTER INSERT ON decisions BEGIN "
                   f"INSERT INTO decision_kpis (decision_id, {names}) VALUES (NEW.id, {values}); END")
        backfill = ", ".join(_sqlite("result", key) for _, key in COUNTS)
    op.execute(f"INSERT INTO decision_kpis (decision_id, {names}) SELECT id, {backfill} FROM decisions")


def downgrade() -> None:
    require_drop_column()
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER decisions_kpis ON decisions")
        op.execute("DROP FUNCTION postsale_decision_kpis()")
    else:
        op.execute("DROP TRIGGER decisions_kpis")
    op.drop_table('decision_kpis')
    op.drop_index('ix_outcomes_type_decision', 'outcomes')
    # plain DROP COLUMN (not a batch copy, which would drop the append-only triggers on outcomes)
    op.drop_column('outcomes', 'request_hash')
    op.drop_column('outcomes', 'offer_kind')


def require_drop_column() -> None:
    """SQLite drops a column in place from 3.35 on; an older one would need a table copy, which
    loses the triggers, so the downgrade stops instead of leaving columns a later upgrade re-adds."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    version = bind.exec_driver_sql("SELECT sqlite_version()").scalar()
    if tuple(int(x) for x in version.split(".")[:2]) < (3, 35):
        raise RuntimeError(f"downgrading needs SQLite 3.35 or later (ALTER TABLE ... DROP COLUMN); this is {version}")
