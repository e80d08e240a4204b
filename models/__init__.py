"""Candidate models, training and evaluation (issue 5)."""
