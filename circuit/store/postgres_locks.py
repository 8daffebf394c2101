"""Advisory locks that make PostgreSQL behave like SQLite where Circuit relies on it.

SQLite commits one writer at a time, so ids become visible in increasing order and migrators
never race. On PostgreSQL an identity id is taken at insert and may commit after a larger one,
so a reader following `id > last_seen` could skip it for good. Writers whose readers follow ids
(request batches, breaker commands) therefore take a transaction-scoped advisory lock first:
the next writer's ids are drawn only after the previous one committed.

`pg_advisory_xact_lock(class, schema)`: the second key is the schema's hash, so deployments in
separate schemas of one database (and parallel test runs) never wait for each other.
"""

from __future__ import annotations

LOCK_STATEMENT = "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))"

MIGRATION_LOCK = 0x43697201  # migrators of one schema take turns
REQUESTS_LOCK = 0x43697202  # request batches commit in id order
COMMANDS_LOCK = 0x43697203  # breaker commands commit in id order
