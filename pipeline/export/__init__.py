"""`outreach export` (docs/compliance.md)."""
