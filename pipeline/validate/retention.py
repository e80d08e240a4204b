"""Validate refuses raw tables that hold months older than the retention period
(``retention.period_months`` from ``retention.today`` or today), unless
``retention.allow_older_raw``: such data should have been destroyed (docs/retention.md)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.datasets import RAW_MONTH_COLUMNS, TableLayout
from pipeline.datasets.raw import retention_cut
from pipeline.errors import DataError
from pipeline.months import format_month, parse_month


def oldest_month(path: Path, column: str) -> str | None:
    """The smallest ``YYYY-MM`` of a column, from the row groups' statistics when they have
    them (else the column is read); None when the file cannot be read (its checks say why)."""
    try:
        return _oldest(path, column)
    except (OSError, pa.ArrowException):
        return None


def _oldest(path: Path, column: str) -> str | None:
    file = pq.ParquetFile(path)
    index = file.schema_arrow.get_field_index(column)
    if index < 0:
        return None  # the schema checks name a missing column
    lows = []
    for group in range(file.metadata.num_row_groups):
        stats = file.metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            values = file.read(columns=[column]).column(column)
            low = pc.min(values).as_py()
            return None if low is None else str(low)
        lows.append(stats.min.decode() if isinstance(stats.min, bytes) else str(stats.min))
    return min(lows) if lows else None


def check_retention(config: Config, raw_dir: Path) -> None:
    """DataError naming the table, the oldest month found and the cut when a raw table holds
    months older than the retention period (nothing when allowed)."""
    if config.retention.allow_older_raw:
        return
    cut = retention_cut(config)
    layout = TableLayout(Path(raw_dir))
    for table, column in RAW_MONTH_COLUMNS.items():
        for code in layout.partitions(table):
            path = layout.partition_file(table, code)
            if not path.is_file():
                continue
            oldest = oldest_month(path, column)
            try:
                too_old = oldest is not None and parse_month(oldest) < cut
            except ValueError:
                continue  # not a month: the column's checks report it
            if too_old:
                raise DataError(
                    f"{path}: table {table} holds {column} {oldest}, older than the retention "
                    f"period: months before {format_month(cut)} "
                    f"(retention.period_months {config.retention.period_months}) must be "
                    "destroyed; run `outreach retention`, or set retention.allow_older_raw: "
                    "true to validate them anyway"
                )
