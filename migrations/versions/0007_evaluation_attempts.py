"""due_evaluations.attempts: an evaluation that keeps failing is given up after a few tries;
audit_log by subject (an account's latest entry, looked up by every evaluation that cannot decide)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('due_evaluations', sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
    op.create_index('ix_audit_log_subject', 'audit_log', ['subject', 'id'])


def downgrade() -> None:
    op.drop_index('ix_audit_log_subject', 'audit_log')
    with op.batch_alter_table('due_evaluations') as b:  # no triggers on this table: a copy is fine
        b.drop_column('attempts')
