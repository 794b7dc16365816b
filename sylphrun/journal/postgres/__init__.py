"""The PostgreSQL journal: the `Journal` interface on a PostgreSQL database, for workers
on several machines sharing one queue.

`open_journal("postgresql://...")` is the way in (`journal.postgres.opening.open_postgres`).
Nothing here is imported until a PostgreSQL URL is opened: psycopg (an optional extra,
`sylphrun[postgres]`) stays out of the CLI's start-up and out of SQLite-only installs.

`connection` (the pool, transactions, one-line errors), `schema` (migrations, mirroring
SQLite's one for one), `transitions` (the fence and the state changes writes share),
`lifecycle`, `steps`, `actions`, `workers` (the writes), `reads`, `listen` (wake-ups),
`journal` (the class) and `opening`.
"""
