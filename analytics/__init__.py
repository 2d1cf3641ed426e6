"""DuckDB queries over the collected Parquet datasets (one query per file in sql/)."""
