"""Connectors: where files are imported from and exported to (S3, a local directory, ...)."""
