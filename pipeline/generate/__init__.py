"""Synthetic administrative data: regions, households, crisis signals, past outreach rounds."""
