"""Location backends: memory (none), SQLite (the embedded default), PostgreSQL and Redis (shared by nodes)."""
