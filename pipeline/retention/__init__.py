"""`outreach retention` (docs/compliance.md)."""
