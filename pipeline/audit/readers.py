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
from pipeline.audit.findings import dig
from pipeline.catalogue import load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.features import MANIFEST as FEATURES_MANIFEST
from pipeline.datasets.rounds import LIST_SUFFIXES, MANIFEST, REPORT, SCORES
from pipeline.io import sha256_file
from pipeline.textsafe import from_spreadsheet_cell
from pipeline.vocabulary import EMD, KEY, list_header_keys

CSV, XLSX = LIST_SUFFIXES
OUT_OF_MANIFEST = (f"{REPORT}/",)  # written by a later stage (the review report), not by score
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
        staged = json.loads(manifest.read_text(encoding="utf-8")).get("staged_manifest_sha256")
    except (OSError, ValueError, AttributeError):
        staged = None  # an unreadable manifest fails on its sha256 already
    return FolderFacts(shown_as, sha256_file(manifest), files, staged)


def under_root(root: Path, folder: Any) -> Path:
    """A folder the manifest records relative to the output root (absolute ones as they are)."""
    if not folder:
        return OutputLayout(Path(root)).features("<not recorded>")
    path = Path(str(folder))
    return path if path.is_absolute() else Path(root) / path


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
