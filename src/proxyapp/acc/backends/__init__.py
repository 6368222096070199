"""Accounting backends: one module per destination (log, db SQLite/PostgreSQL, aaa RADIUS, evi).

Every backend implements the small async interface of base.Backend; the engine's per-backend
worker owns batching, timeouts, the spool and replay, so a backend only has to write a batch
or raise.
"""
