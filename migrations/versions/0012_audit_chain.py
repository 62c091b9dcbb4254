"""a tamper-evident audit: every row of decisions, decision_events (actions, approvals),
audit_log and ruleset_versions gets an entry in audit_chain, written by a database trigger in
the row's own statement (no round trip), carrying the digest of the row and its lane's
previous hash; audit_checkpoints holds the signed heads

Entries are ordered per lane, not globally: a PostgreSQL connection writes to lane
pg_backend_pid() % 64, so two transactions wait for each other only when their connections
share a lane (SQLite has one writer and one lane). A checkpoint signs every lane's head at once.

Revision ID: 0012
Revises: 0011
"""
import hashlib

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

LANES = 64
GENESIS = "0" * 64
# what each entry's digest covers, frozen here: a column added later is not part of old digests
COVERED = {
    "decisions": ("id", ["id", "created_at", "flow", "ruleset_version", "account_id", "status", "api_key_id",
                         "request_hash", "facts", "context", "result", "trigger", "signal_at", "newest_event_at",
                         "features"]),
    "decision_events": ("id", ["id", "decision_id", "type", "created_at", "actor", "payload"]),
    "audit_log": ("id", ["id", "created_at", "actor", "kind", "subject", "detail"]),
    "ruleset_versions": ("id", ["id", "flow", "version", "sources", "actor", "created_at"]),
}
TIMES = {"created_at", "signal_at", "newest_event_at"}


def _pg_digest(row: str, table: str) -> str:
    cols = [f"to_char({row}.{c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')" if c in TIMES
            else f"{row}.{c}::text" for c in COVERED[table][1]]
    return f"encode(sha256(convert_to(json_build_array({', '.join(cols)})::text, 'UTF8')), 'hex')"


def _sqlite_digest(row: str, table: str) -> str:
    return f"postsale_sha256(json_array({', '.join(f'{row}.{c}' for c in COVERED[table][1])}))"


def upgrade() -> None:
    op.create_table(
        "audit_heads",
        sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("lane", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("tbl", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_audit_chain_lane_seq", "audit_chain", ["lane", "seq"])
    op.create_index("ix_audit_chain_ref", "audit_chain", ["tbl", "ref"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heads", sa.JSON, nullable=False),
        sa.Column("prev_mac", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )
    pg = op.get_bind().dialect.name == "postgresql"
    lanes = LANES if pg else 1
    op.bulk_insert(sa.table("audit_heads", sa.column("lane"), sa.column("seq"), sa.column("head"), sa.column("prev")),
                   [{"lane": i, "seq": 0, "head": GENESIS, "prev": GENESIS} for i in range(lanes)])
    _backfill(pg)
    if pg:
        op.execute(f"""
CREATE OR REPLACE FUNCTION postsale_audit_append(tbl text, ref text, d text) RETURNS void AS $$
DECLARE l int := pg_backend_pid() % {LANES}; s bigint; p text; h text;
BEGIN
  UPDATE audit_heads SET seq = seq + 1, prev = head,
         head = encode(sha256(convert_to(head || ' ' || tbl || ' ' || d, 'UTF8')), 'hex')
   WHERE lane = l RETURNING seq, prev, head INTO s, p, h;
  INSERT INTO audit_chain (lane, seq, tbl, ref, digest, prev_hash, hash, created_at)
  VALUES (l, s, tbl, ref, d, p, h, clock_timestamp());
END $$ LANGUAGE plpgsql""")
        for table, (key, _) in COVERED.items():
            op.execute(f"CREATE OR REPLACE FUNCTION postsale_digest_{table}(r {table}) RETURNS text AS $$ "
                       f"SELECT {_pg_digest('r', table)} $$ LANGUAGE sql IMMUTABLE")
            op.execute(f"""
CREATE OR REPLACE FUNCTION postsale_audit_{table}() RETURNS trigger AS $$
BEGIN
  PERFORM postsale_audit_append('{table}', NEW.{key}::text, postsale_digest_{table}(NEW));
  RETURN NULL;
END $$ LANGUAGE plpgsql""")
            op.execute(f"CREATE TRIGGER {table}_audit AFTER INSERT ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION postsale_audit_{table}()")
        op.execute("CREATE VIEW audit_digests AS " + " UNION ALL ".join(
            f"SELECT '{t}'::text AS tbl, r.{k}::text AS ref, postsale_digest_{t}(r) AS digest FROM {t} r"
            for t, (k, _) in COVERED.items()))
        for t in ("audit_chain", "audit_checkpoints"):
            op.execute(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                       "FOR EACH ROW EXECUTE FUNCTION postsale_append_only()")
    else:
        for table, (key, _) in COVERED.items():
            d = _sqlite_digest("NEW", table)
            op.execute(f"""
CREATE TRIGGER {table}_audit AFTER INSERT ON {table} BEGIN
  UPDATE audit_heads SET seq = seq + 1, prev = head, head = postsale_sha256(head || ' {table} ' || {d}) WHERE lane = 0;
  INSERT INTO audit_chain (lane, seq, tbl, ref, digest, prev_hash, hash, created_at)
  SELECT 0, seq, '{table}', CAST(NEW.{key} AS TEXT), {d}, prev, head, strftime('%Y-%m-%d %H:%M:%f', 'now')
    FROM audit_heads WHERE lane = 0;
END""")
        op.execute("CREATE VIEW audit_digests AS " + " UNION ALL ".join(
            f"SELECT '{t}' AS tbl, CAST(r.{k} AS TEXT) AS ref, {_sqlite_digest('r', t)} AS digest FROM {t} r"
            for t, (k, _) in COVERED.items()))
        for t in ("audit_chain", "audit_checkpoints"):
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                           f"BEGIN SELECT RAISE(ABORT, 'table {t} is append-only: record a new event instead'); END")


def _backfill(pg: bool) -> None:
    """Rows recorded before the chain existed enter lane 0 in their tables' id order."""
    bind = op.get_bind()
    digest = _pg_digest if pg else _sqlite_digest
    seq, head, rows = 0, GENESIS, []
    for table, (key, _) in COVERED.items():
        for ref, d in bind.execute(sa.text(f"SELECT CAST(r.{key} AS TEXT), {digest('r', table)} FROM {table} r "
                                           f"ORDER BY r.{key}")):
            seq += 1
            prev, head = head, hashlib.sha256(f"{head} {table} {d}".encode()).hexdigest()
            rows.append({"lane": 0, "seq": seq, "tbl": table, "ref": ref, "digest": d, "prev_hash": prev,
                         "hash": head, "created_at": sa.func.now()})
    if rows:
        chain = sa.table("audit_chain", *(sa.column(c) for c in rows[0]))
        for row in rows:
            bind.execute(chain.insert().values(**row))
        bind.execute(sa.text("UPDATE audit_heads SET seq = :seq, head = :head, prev = :prev WHERE lane = 0"),
                     {"seq": seq, "head": head, "prev": rows[-1]["prev_hash"]})


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP VIEW audit_digests")
    for table in COVERED:
        op.execute(f"DROP TRIGGER {table}_audit ON {table}" if pg else f"DROP TRIGGER {table}_audit")
        if pg:
            op.execute(f"DROP FUNCTION postsale_audit_{table}()")
            op.execute(f"DROP FUNCTION postsale_digest_{table}({table})")
    if pg:
        op.execute("DROP FUNCTION postsale_audit_append(text, text, text)")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_chain")
    op.drop_table("audit_heads")
