"""outcomes: the kind of the offer an outcome names, and the hash of the request that recorded it

Revision ID: 0006
Revises: 0005

`offer_kind` is copied from the decision's offer when the outcome is recorded
(adapters/store/outcomes.py), so the upgrade win rate needs no JSON per decision.
`request_hash` makes a repeated outcome id an idempotent replay (same body) or a conflict.
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (not a batch copy): the append-only triggers on outcomes stay in place
    op.add_column('outcomes', sa.Column('offer_kind', sa.String(length=32), nullable=True))
    op.add_column('outcomes', sa.Column('request_hash', sa.String(length=64), nullable=True))
    op.create_index('ix_outcomes_type_decision', 'outcomes', ['type', 'decision_id'])
    op.create_index('ix_decisions_flow_created', 'decisions', ['flow', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_decisions_flow_created', 'decisions')
    op.drop_index('ix_outcomes_type_decision', 'outcomes')
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column('outcomes', 'request_hash')
        op.drop_column('outcomes', 'offer_kind')
