"""Durable storage: SQLAlchemy models and repositories (SQLite or PostgreSQL), Redis stores."""
