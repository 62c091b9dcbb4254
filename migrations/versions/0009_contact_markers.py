"""contact markers indexed: the contact policy counts an account's (and a channel's) recent
contacts through these, instead of scanning every outbox row's result

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

FIELDS = ("contact_account", "contact_channel")


def _expr(dialect: str, field: str) -> str:
    """The same text as adapters/dispatch/contact.marker_expression, so the planner uses it."""
    if dialect == "postgresql":
        return f"(result ->> '{field}')"
    return f"json_extract(result, '$.{field}')"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for field in FIELDS:
        op.execute(f"CREATE INDEX ix_outbox_{field} ON outbox ({_expr(dialect, field)})")


def downgrade() -> None:
    for field in FIELDS:
        op.execute(f"DROP INDEX ix_outbox_{field}")
