"""knowledge documents with a full-text index (FTS5 on SQLite, tsvector + GIN on PostgreSQL)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('knowledge_docs',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('source', sa.String(length=255), nullable=False),
        sa.Column('offers', sa.JSON(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', name='uq_knowledge_docs_source'),
    )
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        # a plain FTS5 table; adapters.store.knowledge.load_dir keeps it in step with knowledge_docs
        op.execute("CREATE VIRTUAL TABLE knowledge_fts USING fts5("
                   "doc_id UNINDEXED, title, body, tokenize = 'porter unicode61')")
    elif dialect == 'postgresql':
        op.execute("ALTER TABLE knowledge_docs ADD COLUMN tsv tsvector GENERATED ALWAYS AS ("
                   "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
                   "setweight(to_tsvector('english', coalesce(body, '')), 'B')) STORED")
        op.execute("CREATE INDEX ix_knowledge_docs_tsv ON knowledge_docs USING GIN (tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("DROP TABLE IF EXISTS knowledge_fts")
    op.drop_table('knowledge_docs')
