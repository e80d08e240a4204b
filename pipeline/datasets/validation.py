"""The validation record: ``<output_root>/validation/``, written by ``outreach validate``.

One folder per run under ``runs/<run_id>/`` (``validation.json``, ``volume.json``,
``rejected_rows.parquet``, ``gx_results.json``, ``summary.html``, ``data_docs/``) and two pointers:
``latest.json`` (the last run) and ``passed.json`` (the last run that passed). Every stage that
reads the record reads it here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.io import sha256_file

RUNS = "runs"
LATEST = "latest.json"
PASSED_POINTER = "passed.json"
VALIDATION_JSON = "validation.json"
VOLUME_JSON = "volume.json"
REJECTED_ROWS = "rejected_rows.parquet"
GX_RESULTS = "gx_results.json"
SUMMARY_HTML = "summary.html"
DATA_DOCS = "data_docs"
# In validation.json: the sha256 of every other file of the run's folder (results, pages).
OUTPUTS_SHA256 = "outputs_sha256"

PASSED = "passed"
FAILED = "failed"


def runs_dir(layout: OutputLayout) -> Path:
    return layout.validation / RUNS


def read_pointer(layout: OutputLayout, name: str = PASSED_POINTER) -> dict[str, Any] | None:
    """The pointer ``name`` (``passed.json`` or ``latest.json``), or None when absent/unreadable."""
    path = layout.validation / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def contract_digest(config: Config) -> str:
    """Digest of what the checks depend on besides the data: settings and catalogues.

    Ingest compares it, so that a change of window, value sets or catalogue needs a new
    validation before data moves on.
    """
    facts = {
        "validation": config.validation.model_dump(mode="json"),
        "window": config.window.model_dump(mode="json"),
        "indicators_sha256": sha256_file(config.paths.indicators),
        "outcomes_sha256": sha256_file(config.paths.outcomes),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()


def validation_record_file(config: Config, run_id: str) -> Path:
    """``<output_root>/validation/runs/<run_id>/validation.json``."""
    return runs_dir(OutputLayout(config.paths.output_root)) / run_id / VALIDATION_JSON
