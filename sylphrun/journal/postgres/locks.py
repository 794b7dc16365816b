"""Advisory lock keys of a PostgreSQL journal (per database): the feed numbering (taken
at commit by `sylphrun_number_feed()`, see `schema`), and migrations (`opening`)."""

FEED_LOCK = 0x5F1_0001
MIGRATION_LOCK = 0x5F1_0002
