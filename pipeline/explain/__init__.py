"""`outreach explain` (docs/compliance.md)."""
