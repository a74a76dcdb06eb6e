"""Open-data releases: Parquet, Darwin Core Archive, metadata, checksums (issue #6)."""
