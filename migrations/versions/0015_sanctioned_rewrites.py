"""a sanctioned path through the append-only guards, for erasing a subject's personal data and
for retention: while the writing transaction holds a row in sanctioned_rewrites, decisions,
decision_events, events and outcomes accept UPDATE and DELETE. The row is added and removed in
that one transaction, so no other transaction ever sees it; audit_log, ruleset_versions and the
audit chain stay append-only without exception.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

REWRITABLE = ("decisions", "decision_events", "events", "outcomes")
REFUSE = "SELECT RAISE(ABORT, 'table {t} is append-only: record a new event instead')"

GUARD_PG = """
CREATE OR REPLACE FUNCTION postsale_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME IN ({tables}) AND EXISTS (SELECT 1 FROM sanctioned_rewrites) THEN
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'table % is append-only: record a new event instead', TG_TABLE_NAME;
END $$ LANGUAGE plpgsql
"""
STRICT_PG = """
CREATE OR REPLACE FUNCTION postsale_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only: record a new event instead', TG_TABLE_NAME;
END $$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "sanctioned_rewrites",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("reason", sa.String(32), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(GUARD_PG.format(tables=", ".join(f"'{t}'" for t in REWRITABLE)))
        return
    for t in REWRITABLE:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER {t}_no_{verb.lower()}")
            op.execute(f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                       f"WHEN NOT EXISTS (SELECT 1 FROM sanctioned_rewrites) BEGIN {REFUSE.format(t=t)}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(STRICT_PG)
    else:
        for t in REWRITABLE:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"DROP TRIGGER {t}_no_{verb.lower()}")
                op.execute(f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} BEGIN {REFUSE.format(t=t)}; END")
    op.drop_table("sanctioned_rewrites")
