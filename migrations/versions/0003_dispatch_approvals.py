"""dispatch state on the outbox; approvals

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as b:
        b.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        b.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column('claimed_by', sa.String(length=128), nullable=True))
        b.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        b.add_column(sa.Column('result', sa.JSON(), nullable=True))
        b.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        b.create_index('ix_outbox_state', ['state'], unique=False)
        b.create_index('ix_outbox_due', ['state', 'next_attempt_at'], unique=False)

    op.create_table('approvals',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('decision_id', sa.String(length=32), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('queues', sa.JSON(), nullable=False),
        sa.Column('reasons', sa.JSON(), nullable=False),
        sa.Column('proposed', sa.JSON(), nullable=False),
        sa.Column('requested_by', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(length=32), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('edits', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['decision_id'], ['decisions.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('decision_id'),
    )
    with op.batch_alter_table('approvals', schema=None) as b:
        b.create_index('ix_approvals_state', ['state'], unique=False)
        b.create_index('ix_approvals_expires_at', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table('approvals')
    with op.batch_alter_table('outbox', schema=None) as b:
        b.drop_index('ix_outbox_due')
        b.drop_index('ix_outbox_state')
        for c in ('updated_at', 'result', 'last_error', 'lease_until', 'claimed_by', 'next_attempt_at', 'attempts'):
            b.drop_column(c)
