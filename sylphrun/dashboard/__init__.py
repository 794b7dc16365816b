"""The Textual dashboard: runs, step trees, timelines and logs, live from the journal.

Reads go through the journal interface (`JournalReader`) in a thread worker (`feed.py`);
actions go through `sylphrun.actions`, the same functions the CLI uses. `app.run_dashboard`
is the one entry point for the CLI and `app.DashboardApp` the one app for tests.
"""
