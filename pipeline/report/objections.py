"""The objections of a round on the overview (docs/objections.md): how many households refuse
automated profiling or asked for an explanation, and how many the round's features left out.

The counts are those of the feature round the round was scored from (its manifest's
``objections`` block: the report refuses a round whose feature folder changed since). A round
built without an objections registry has none, and the overview shows nothing of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.datasets.features import MANIFEST, read_folder_manifest
from pipeline.datasets.objections import EXPLAIN, REFUSE, round_record
from pipeline.report import pages


def read_objection_counts(features_folder: Path) -> dict[str, Any] | None:
    """The objection counts a round's feature folder records (None: built without a registry):
    ``refuse``, ``explain``, ``left_out_households``, ``left_out_label_rows`` and the registry's
    sha256."""
    if not (features_folder / MANIFEST).is_file():
        return None
    record = round_record(read_folder_manifest(features_folder))
    if record is None:
        return None
    counts = record.get("counts") or {}
    return {
        REFUSE: int(counts.get(REFUSE, 0)),
        EXPLAIN: int(counts.get(EXPLAIN, 0)),
        "left_out_households": int(record.get("left_out_households", 0)),
        "left_out_label_rows": int(record.get("left_out_label_rows", 0)),
        "registry_sha256": record.get("registry_sha256"),
    }


def objections_context(counts: dict[str, Any] | None, threshold: int) -> dict[str, str] | None:
    """The overview's objection figures, counts under ``threshold`` shown as "<threshold";
    None without a registry; pure."""
    if counts is None:
        return None
    return {
        "refuse": pages.count(counts[REFUSE], threshold),
        "explain": pages.count(counts[EXPLAIN], threshold),
        "left_out": pages.count(counts["left_out_households"], threshold),
        "label_rows": pages.count(counts["left_out_label_rows"], threshold),
        "registry_sha256": str(counts.get("registry_sha256") or "–"),
    }
