"""``outreach audit``: trace a list or a round back through MLflow and verify every link.

- :mod:`~pipeline.audit.command`: the command line: arguments, one printed line per link, verdict;
- :mod:`~pipeline.audit.target`: what PATH names (a round folder, a month, a manifest, a list);
- :mod:`~pipeline.audit.stage`: :func:`~pipeline.audit.stage.audit`, the chain run on the facts;
- :mod:`~pipeline.audit.chain`: the chain of links as data, each with its check and its needs;
- :mod:`~pipeline.audit.facts`: the facts of one audit, gathered once (files, MLflow, git);
- :mod:`~pipeline.audit.readers`: reading the round folder, the feature folders and records;
- :mod:`~pipeline.audit.rescore`: the sample re-scored with the recorded model;
- :mod:`~pipeline.audit.findings`: link names, statuses, :class:`~pipeline.audit.findings.Finding`;
- pure checks, facts in, findings out: :mod:`~pipeline.audit.checks_files` (list file, round
  manifest, list rows), :mod:`~pipeline.audit.checks_mlflow` (scoring run, model version,
  training run), :mod:`~pipeline.audit.checks` (training data, scoring features, validation,
  code version, re-score).

See docs/audit.md.
"""
