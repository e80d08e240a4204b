"""``outreach audit``: trace a list or a round back through MLflow and verify every link.

:mod:`pipeline.audit.checks` holds the pure checks (facts in, findings out);
:mod:`pipeline.audit.stage` reads the files, MLflow and git and runs them in chain order;
:mod:`pipeline.audit.command` is the command line. See docs/audit.md.
"""
