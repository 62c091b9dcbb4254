"""sandbox tool state: calls (idempotency ledger), records, faults

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('sandbox_calls',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('tool', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tool', 'idempotency_key', name='uq_sandbox_calls_tool_key')
    )
    with op.batch_alter_table('sandbox_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_calls_created_at'), ['created_at'], unique=False)

    op.create_table('sandbox_records',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('tool', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reference')
    )
    with op.batch_alter_table('sandbox_records', schema=None) as batch_op:
        batch_op.create_index('ix_sandbox_records_kind_account', ['kind', 'account_id'], unique=False)
        batch_op.create_index('ix_sandbox_records_account', ['account_id'], unique=False)

    op.create_table('sandbox_faults',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('tool', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=True),
    sa.Column('error', sa.String(length=32), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=True),
    sa.Column('retry_after', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sandbox_faults', schema=None) as batch_op:
        batch_op.create_index('ix_sandbox_faults_tool', ['tool'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sandbox_faults', schema=None) as batch_op:
        batch_op.drop_index('ix_sandbox_faults_tool')
    op.drop_table('sandbox_faults')
    with op.batch_alter_table('sandbox_records', schema=None) as batch_op:
        batch_op.drop_index('ix_sandbox_records_account')
        batch_op.drop_index('ix_sandbox_records_kind_account')
    op.drop_table('sandbox_records')
    with op.batch_alter_table('sandbox_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_calls_created_at'))
    op.drop_table('sandbox_calls')
