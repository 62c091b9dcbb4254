"""instance: the database's own random id, so caches shared through Redis are keyed by database
(whatever host name or URL each process reaches it by)

Revision ID: 0008
Revises: 0007
"""
import secrets
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('instance',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(table, [{"id": secrets.token_hex(16), "created_at": datetime.now(timezone.utc)}])


def downgrade() -> None:
    op.drop_table('instance')
