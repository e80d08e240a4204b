"""``outreach validate``: Great Expectations suites over the raw tables, one verdict per run.

See docs/validation.md for what is checked, what stops a run, what is set aside, and where the
results are kept.
"""
