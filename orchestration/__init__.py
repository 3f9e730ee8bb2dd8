"""meterbook: a usage-based billing close as one Dagster asset graph over dbt and DuckDB."""
