"""``outreach ingest``: validated raw tables -> staged tables without direct identifiers."""
