"""due_evaluations.attempts: an evaluation that keeps failing is given up after a few tries

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


def downgrade() -> None:
    with op.batch_alter_table('due_evaluations') as b:  # no triggers on this table: a copy is fine
        b.drop_column('attempts')
