"""Reading a list a caseworker filled in and sent back: CSV or XLSX, Korean or English headers.

The reader keeps only the columns the import needs (``KEPT``), as text, with the file's row
number. The note column, the reasons and every column it does not know are dropped here, while
reading: nothing a caseworker wrote in a note is ever held in a frame, stored or reported.

- CSV: UTF-8 with or without a byte-order mark; CP949 (what Korean Excel writes for "CSV")
  is accepted too. Every field is read as text.
- XLSX: the first sheet; header in its first row. Cells are turned into text: dates written as
  dates become ``YYYY-MM-DD`` (a round typed as a date becomes ``YYYY-MM``), whole numbers lose
  their ``.0``.

A text cell that ``outreach score`` wrote with a leading apostrophe (so that a spreadsheet shows
it as text, not as a formula: :func:`pipeline.textsafe.spreadsheet_cell`) is read back without
it, whether or not the spreadsheet kept the apostrophe.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from pipeline.errors import DataError
from pipeline.textsafe import from_spreadsheet_cell
from pipeline.vocabulary import list_header_keys

# Columns read from a returned list (keys of ``pipeline.score.lists.LIST_COLUMNS``).
KEPT: tuple[str, ...] = (
    "round",
    "sigungu_code",
    "emd_code",
    "list_rank",
    "household_key",
    "selection",
    "outcome_code",
    "linked_service",
    "contact_date",
    "override",
)
REQUIRED: tuple[str, ...] = ("round", "emd_code", "household_key", "outcome_code", "contact_date")
DROPPED_ON_READ: tuple[str, ...] = ("note",)  # never read into memory as data
ROW = "row"  # the row number in the file, as a spreadsheet shows it (the header is row 1)


@dataclass(frozen=True)
class ReturnedList:
    """The kept columns of a returned list (text, NA for empty cells) and the file's digest."""

    path: Path
    sha256: str
    kind: str  # "csv" or "xlsx"
    rows: pd.DataFrame  # ROW, then the columns of KEPT that the file has
    columns: tuple[str, ...]  # the KEPT columns found in the header


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes, path: Path) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp949")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file in UTF-8 or CP949") from None


def cell_text(value: object) -> str | None:
    """One cell as text (None for an empty cell; the apostrophe of a neutralised formula off)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if (value.hour, value.minute, value.second, value.microsecond) != (0, 0, 0, 0):
            return value.isoformat(sep=" ")
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = from_spreadsheet_cell(str(value).strip()).strip()
    return text or None


def _frame(header: list[object], records: list[tuple[int, list[object]]], path: Path):
    """Map the header to keys, keep the KEPT columns, drop fully empty rows."""
    keys = list_header_keys()
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        text = cell_text(name)
        key = keys.get(text) if text is not None else None
        if key is None or key in DROPPED_ON_READ or key not in KEPT:
            continue
        if key in positions:
            raise DataError(f"{path}: column {text!r} appears twice in the header")
        positions[key] = index
    missing = [k for k in REQUIRED if k not in positions]
    if missing:
        raise DataError(
            f"{path}: the header lacks column(s) {', '.join(missing)}: is this a list written "
            "by `outreach score` (Korean or English headers, first row)?"
        )
    found = tuple(k for k in KEPT if k in positions)
    data: dict[str, list[object]] = {ROW: []}
    for key in found:
        data[key] = []
    for number, values in records:
        kept = {
            key: cell_text(values[i]) if i < len(values) else None for key, i in positions.items()
        }
        if all(v is None for v in kept.values()):
            continue  # an empty line (or one holding only a note): not a row of the list
        data[ROW].append(number)
        for key in found:
            data[key].append(kept[key])
    frame = pd.DataFrame({ROW: pd.array(data[ROW], dtype="int64")})
    for key in found:
        frame[key] = pd.array(data[key], dtype="string")
    return frame, found


def read_csv_bytes(data: bytes, path: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    text = decode_text(data, path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty file")
    records = [(i, list(r)) for i, r in enumerate(rows[1:], start=2)]
    return _frame(list(rows[0]), records, path)


def read_xlsx_bytes(data: bytes, path: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (BadZipFile, KeyError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable XLSX workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise DataError(f"{path}: the first sheet is empty")
        records = [(i, list(r)) for i, r in enumerate(rows, start=2)]
    finally:
        book.close()
    return _frame(list(header), records, path)


def read_returned_list(path: Path) -> ReturnedList:
    """Read a returned list (``.csv`` or ``.xlsx``); DataError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".csv":
        kind = "csv"
        frame, found = read_csv_bytes(data, path)
    elif suffix in (".xlsx", ".xlsm"):
        kind = "xlsx"
        frame, found = read_xlsx_bytes(data, path)
    else:
        raise DataError(f"{path}: expected a .csv or .xlsx list written by `outreach score`")
    return ReturnedList(path, _digest(data), kind, frame, found)
