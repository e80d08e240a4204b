"""The objections registry checked and staged by ingest (docs/objections.md).

The registry (``objections.registry``, a UTF-8 CSV: ``household_key``, ``date``, ``kind``) is
read and checked with a Great Expectations suite before any staged table is written: each row's
key, kind (``refuse`` or ``explain``) and date (``YYYY-MM-DD``, not after the day of the run in
Korea), and no household twice with the same kind. Whether each key is a staged household is
checked once the households are staged (in the folder that is swapped in only when everything
passed), so a bad registry leaves the staged tables, the feature rounds and the ledger as they
were. A failure is a DataError of one line (file, row, column, what was expected); every
failing row is logged the same way, without the household's key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.datasets import TableLayout
from pipeline.datasets.objections import (
    COLUMNS,
    DATE,
    KIND,
    KINDS,
    counts_by_kind,
    staged_objections_file,
)
from pipeline.errors import DataError
from pipeline.expectations import STOP, Check
from pipeline.io import sha256_file, write_parquet
from pipeline.vocabulary import KEY

log = logging.getLogger(__name__)

SUITE = "objections_registry"
DATA_SOURCE = "objections"
BATCH_DEFINITION = "whole_registry"
ROW = "row"  # the file's line number of the row (the header is line 1)
DAY = "day"  # the date as the integer YYYYMMDD (null when it is no date)
KOREA = ZoneInfo("Asia/Seoul")
LOGGED_LINES = 20  # failing rows logged one per line, at most


def run_day() -> date:
    """Today in Korea: no objection may be dated after the day of the run."""
    return datetime.now(KOREA).date()


@dataclass(frozen=True)
class Registry:
    """A registry that passed the row checks: the file, its sha256 and its rows (``row``,
    household_key, date, kind)."""

    path: Path
    sha256: str
    rows: pd.DataFrame


def _c(column: str, expectation: str, reason: str, **kwargs: Any) -> Check:
    return Check(
        SUITE, expectation, {"column": column, **kwargs} if column else kwargs, STOP, reason
    )


def row_checks(today: date) -> list[Check]:
    """The checks of each registry row (the keys are checked apart: :func:`key_check`)."""
    return [
        _c(KEY, "ExpectColumnValuesToNotBeNull", "household key missing: expected the key"),
        _c(KIND, "ExpectColumnValuesToNotBeNull", "kind missing: expected refuse or explain"),
        _c(
            KIND,
            "ExpectColumnValuesToBeInSet",
            f"unknown kind: expected one of {', '.join(KINDS)}",
            value_set=list(KINDS),
        ),
        _c(DATE, "ExpectColumnValuesToNotBeNull", "date missing: expected YYYY-MM-DD"),
        _c(
            DATE,
            "ExpectColumnValuesToMatchStrftimeFormat",
            "bad date: expected a date YYYY-MM-DD",
            strftime_format="%Y-%m-%d",
        ),
        _c(
            DAY,
            "ExpectColumnValuesToBeBetween",
            f"date after the day of the run: expected {today.isoformat()} or earlier",
            max_value=today.year * 10000 + today.month * 100 + today.day,
        ),
        _c(
            "",
            "ExpectCompoundColumnsToBeUnique",
            "duplicate: expected one row per household and kind",
            column_list=[KEY, KIND],
        ),
    ]


def key_check(known: Iterable[str]) -> Check:
    """Every key is a staged household's (``known``: the registry's keys that are)."""
    return _c(
        KEY,
        "ExpectColumnValuesToBeInSet",
        "unknown household key: expected the key of a household in the staged tables",
        value_set=sorted(known),
    )


def read_registry(path: Path) -> pd.DataFrame:
    """The registry's rows as text (``row``: the file line; empty cells as null). DataError
    naming the file when it is missing, not UTF-8 text or lacks a column."""
    if not path.is_file():
        raise DataError(f"{path}: objections registry not found (objections.registry)")
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8", skipinitialspace=True
        )
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text: expected a UTF-8 CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} missing: expected the header "
            f"{','.join(COLUMNS)}"
        )
    rows = frame[list(COLUMNS)].apply(lambda s: s.str.strip()).replace("", None)
    day = pd.to_datetime(rows[DATE], format="%Y-%m-%d", errors="coerce")
    return pd.DataFrame(
        {
            ROW: range(2, len(rows) + 2),
            KEY: rows[KEY].astype(object),
            DATE: rows[DATE].astype(object),
            KIND: rows[KIND].astype(object),
            DAY: (day.dt.year * 10000 + day.dt.month * 100 + day.dt.day).astype(float),
        }
    )


def failures(rows: pd.DataFrame, checks: list[Check]) -> list[tuple[int, str, str]]:
    """(file row, column, reason) of every failing row, by row then in the order of the
    checks; a real Great Expectations run over the rows."""
    from pipeline.expectations import build_suite, failing_rows, new_context

    if rows.empty:
        return []
    context = new_context()
    asset = context.data_sources.add_pandas(DATA_SOURCE).add_dataframe_asset(SUITE)
    definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    suite = build_suite(SUITE, checks)
    by_reason = {c.reason: (i, c) for i, c in enumerate(checks)}
    found = []
    for row, reason in failing_rows(definition, suite, rows, ROW, "objections check"):
        order, check = by_reason[reason]
        column = DATE if check.column == DAY else check.column
        found.append((row, order, column, check.reason))
    found.sort()
    return [(row, column, reason) for row, _, column, reason in dict.fromkeys(found)]


def raise_failures(path: Path, found: list[tuple[int, str, str]]) -> None:
    """Log each failing row (one line each) and raise a DataError of the first; nothing when
    none failed."""
    if not found:
        return
    lines = [f"{path}: row {row}, column {column}: {reason}" for row, column, reason in found]
    for line in lines[:LOGGED_LINES]:
        log.error("%s", line)
    more = f" ({len(lines)} problems in all, each logged)" if len(lines) > 1 else ""
    raise DataError(f"{lines[0]}{more}; nothing was applied")


def load_registry(path: Path, today: date | None = None) -> Registry:
    """Read the registry and check its rows (:func:`row_checks`); DataError on the first
    failing row."""
    rows = read_registry(path)
    raise_failures(path, failures(rows, row_checks(today or run_day())))
    return Registry(path, sha256_file(path), rows)


def staged_keys_among(staged_dir: Path, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are households of the staged tables under ``staged_dir`` (only the
    rows of those keys are read)."""
    import pyarrow.compute as pc

    wanted = pa.array(sorted(set(keys)), type=pa.string())
    layout = TableLayout(staged_dir)
    found: set[str] = set()
    for code in layout.partitions("households"):
        table = pq.read_table(
            layout.partition_file("households", code),
            columns=[KEY],
            filters=pc.field(KEY).isin(wanted),
        )
        found.update(str(k) for k in table.column(KEY).to_pylist())
    return found


def stage_registry(registry: Registry, staged_dir: Path) -> dict[str, Any]:
    """Check the registry's keys against the staged households and write
    ``objections.parquet`` into ``staged_dir``; returns the staged manifest's ``objections``
    block (registry, its sha256, counts by kind)."""
    rows = registry.rows
    known = staged_keys_among(staged_dir, rows[KEY].dropna())
    raise_failures(registry.path, failures(rows, [key_check(known)]))
    table = pa.table(
        {
            KEY: pa.array(rows[KEY].astype(str), pa.string()),
            DATE: pa.array(pd.to_datetime(rows[DATE], format="%Y-%m-%d").dt.date, pa.date32()),
            KIND: pa.array(rows[KIND].astype(str), pa.string()),
        }
    ).sort_by([(KEY, "ascending"), (KIND, "ascending")])
    write_parquet(table, staged_objections_file(staged_dir))
    counts = counts_by_kind(table.to_pandas())
    return {"registry": str(registry.path), "registry_sha256": registry.sha256, "counts": counts}


def reference(secret: bytes, household_key: str) -> str:
    """A household's reference in the ledger: an HMAC-SHA256 of its key under the pseudonym
    key. The ledger is kept for ever; the key, which anyone could enumerate, is never in it."""
    message = b"welfare-outreach objection\0" + household_key.encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def ledger_objections(staged_dir: Path, secret: bytes) -> list[Mapping[str, str]]:
    """Each staged objection as the ledger records it: reference, date and kind, sorted."""
    path = staged_objections_file(staged_dir)
    if not path.is_file():
        return []
    table = pq.read_table(path).to_pylist()
    return sorted(
        (
            {"ref": reference(secret, str(r[KEY])), "date": r[DATE].isoformat(), "kind": r[KIND]}
            for r in table
        ),
        key=lambda o: (o["ref"], o["kind"]),
    )
