"""Sinks: where landed blocks go besides the lake and DuckDB (PostgreSQL, for MDS)."""
