"""The dashboard's widgets: each draws one thing from data it is handed (no journal I/O)."""
