"""Readers of the round folder and the output root, for :mod:`pipeline.audit.facts`.

Owns how the audit reads what ``outreach score`` and the earlier stages wrote: the sha256 of the
round's files (``report/`` excepted, written later), a list file's rows as text with column keys
(CSV, or an XLSX read back as the CSV shows it), the columns of ``scores.parquet`` the lists show,
the selection-reason texts, a feature folder's digests and the validation record the manifest
names. Read only; names come from :mod:`pipeline.datasets` and :mod:`pipeline.vocabulary`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.audit.checks import FolderFacts, ValidationFacts
from pipeline.audit.checks_files import ReportFacts, StagedFacts, load_json_text, unsafe_path
from pipeline.audit.findings import dig
from pipeline.catalogue import load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.features import MANIFEST as FEATURES_MANIFEST
from pipeline.datasets.raw import GENERATION_RECORD
from pipeline.datasets.rounds import (
    EXPLANATIONS,
    EXPORT,
    LIST_SUFFIXES,
    MANIFEST,
    REPORT,
    REPORT_RECORD,
    SCORES,
    SHADOW,
)
from pipeline.datasets.staged import STAGED_MANIFEST
from pipeline.datasets.validation import VALIDATION_JSON
from pipeline.io import sha256_file
from pipeline.textsafe import from_spreadsheet_cell
from pipeline.vocabulary import EMD, KEY, list_header_keys

CSV, XLSX = LIST_SUFFIXES
# written later (the review report; a challenger's shadow record; the offices' encrypted
# bundles; households' explanations), not by score
OUT_OF_MANIFEST = (f"{REPORT}/", f"{SHADOW}/", f"{EXPORT}/", f"{EXPLANATIONS}/")
SCORE_COLUMNS = (
    KEY,
    "sigungu_code",
    EMD,
    "score",
    "tier",
    "selection_reason",
    "list_rank",
    "reason_1_text",
    "reason_2_text",
    "reason_3_text",
)


# --- the round folder ------------------------------------------------------------------------


def round_files(round_dir: Path) -> dict[str, str]:
    """sha256 of the round's files, except the manifest itself and what later stages add."""
    out = {}
    for path in sorted(round_dir.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(round_dir).as_posix()
        if name == MANIFEST or name.startswith(OUT_OF_MANIFEST):
            continue
        out[name] = sha256_file(path)
    return out


def read_list(path: Path) -> pd.DataFrame:
    """A list file's rows as text, with column keys (Korean or English headers mapped back)."""
    if path.suffix.lower() == CSV:
        text = path.read_bytes().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
    else:
        rows = _xlsx_rows(path)
    if not rows:
        return pd.DataFrame()
    keys = list_header_keys()
    columns = [keys.get(str(h).strip(), f"unknown: {h}") for h in rows[0]]
    # Text cells were neutralised against formulas when written: compare what was meant.
    body = [
        [from_spreadsheet_cell(v) for v in r] + [""] * (len(columns) - len(r))
        for r in rows[1:]
        if any(v != "" for v in r)
    ]
    return pd.DataFrame(body, columns=columns, dtype="object")


def _xlsx_rows(path: Path) -> list[list[str]]:
    """The first sheet's cells as text as the CSV shows them (risk with one decimal)."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = book.worksheets[0]
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()
    if not rows:
        return []
    keys = list_header_keys()
    risk = [keys.get(str(h), "") for h in rows[0]].index("risk_percent") if rows else -1
    out = [["" if v is None else str(v) for v in rows[0]]]
    for row in rows[1:]:
        text = []
        for i, value in enumerate(row):
            if value is None:
                text.append("")
            elif i == risk and isinstance(value, int | float):
                text.append(f"{float(value):.1f}")
            elif isinstance(value, float) and value.is_integer():
                text.append(str(int(value)))
            else:
                text.append(str(value))
        out.append(text)
    return out


def read_scores(round_dir: Path) -> pd.DataFrame:
    """The columns of scores.parquet that lists show and the re-score needs."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(round_dir / SCORES).names)
    frame = pd.read_parquet(round_dir / SCORES, columns=[k for k in SCORE_COLUMNS if k in present])
    text = [KEY, "sigungu_code", EMD, "tier", "selection_reason"]
    return frame.assign(**{k: frame[k].astype(str) for k in text if k in frame.columns})


def selection_names(config: Config) -> dict[str, set[str]]:
    """Each selection reason's code -> the texts a list may show for it (Korean, English, code)."""
    outcomes = load_outcomes(config.paths.outcomes)
    return {r.code: {r.name_ko, r.name_en, r.code} for r in outcomes.selection_reasons}


# --- the output root: feature folders, validation record --------------------------------------


def folder_facts(folder: Path, shown_as: str) -> FolderFacts:
    """A feature folder's manifest sha256 and the sha256 of its other files, as found now."""
    manifest = folder / FEATURES_MANIFEST
    if not manifest.is_file():
        return FolderFacts(shown_as, None)
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p != manifest
    }
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        staged, view = record.get("staged_manifest_sha256"), record.get("staged_view_sha256")
    except (OSError, ValueError, AttributeError):
        staged = view = None  # an unreadable manifest fails on its sha256 already
    return FolderFacts(shown_as, sha256_file(manifest), files, staged, view)


def under_root(root: Path, folder: Any) -> Path | None:
    """A path the manifest records relative to ``root``; None when it is absolute or leaves
    ``root`` (never followed: the ``round manifest`` link names it)."""
    if not folder:
        return OutputLayout(Path(root)).features("<not recorded>")
    if unsafe_path(str(folder)):
        return None
    return Path(root) / str(folder)


def tree_sha256(folder: Path, leave_out: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file below ``folder`` (relative posix path -> digest), except the
    relative paths in ``leave_out``; empty when the folder is missing."""
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in leave_out:
            out[name] = sha256_file(path)
    return out


def raw_facts(raw_dir: Path) -> dict[str, str]:
    """sha256 of every raw input file now (generate's own record of them left out)."""
    return tree_sha256(raw_dir, (GENERATION_RECORD,))


def staged_facts(root: Path, manifest: dict[str, Any]) -> StagedFacts:
    """The staged folder now: its manifest's sha256 and record of its files, the files found,
    and the capacity file the round names."""
    staged = OutputLayout(Path(root)).staged
    path = staged / STAGED_MANIFEST
    recorded, sha = None, None
    if path.is_file():
        sha = sha256_file(path)
        data, _ = load_json_text(path.read_text(encoding="utf-8", errors="replace"))
        files = (data or {}).get("files_sha256")
        recorded = files if isinstance(files, dict) else None
    capacity = dig(manifest, "capacity.file")
    capacity_path = under_root(root, capacity) if capacity else None
    return StagedFacts(
        shown_as=staged.relative_to(root).as_posix(),
        manifest_sha256=sha,
        recorded=recorded,
        files=tree_sha256(staged, (STAGED_MANIFEST,)),
        capacity_file=str(capacity) if capacity else None,
        capacity_sha256=sha256_file(capacity_path)
        if capacity_path is not None and capacity_path.is_file()
        else None,
    )


def report_facts(round_dir: Path) -> ReportFacts | None:
    """The round's ``report/`` now: its record's page digests and the pages found; None when
    no report was written."""
    folder = round_dir / REPORT
    if not folder.is_dir():
        return None
    path = folder / REPORT_RECORD
    record, error = None, None
    if path.is_file():
        record, error = load_json_text(path.read_text(encoding="utf-8", errors="replace"))
    else:
        error = "missing"
    return ReportFacts(
        record=record,
        record_error=error,
        files=tree_sha256(folder, (REPORT_RECORD,)),
    )


def validation_facts(
    root: Path, manifest: dict[str, Any], training_record: Any, training_raw: Any
) -> ValidationFacts:
    """The validation record the manifest names, as found now, and the training run's copy."""
    record = dig(manifest, "validation.record")
    path = under_root(root, record) if record else None
    exists = path is not None and path.is_file()
    data = None
    if exists:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {"status": "unreadable"}
    return ValidationFacts(
        record_path=str(record) if record else None,
        record_sha256=sha256_file(path) if exists else None,
        record=data,
        training_record=training_record if isinstance(training_record, dict) else None,
        training_raw_sha256=training_raw if isinstance(training_raw, dict) else None,
    )


def validation_run_files(root: Path, manifest: dict[str, Any]) -> dict[str, str] | None:
    """sha256 of every file of the validation run folder the round names (its results and
    pages), ``validation.json`` left out; None when the record is not there."""
    record = dig(manifest, "validation.record")
    path = under_root(root, record) if record else None
    if path is None or not path.is_file():
        return None
    return tree_sha256(path.parent, (VALIDATION_JSON,))
