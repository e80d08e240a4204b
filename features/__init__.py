"""Point-in-time risk features (issue 4)."""
