"""The time room: calendar months as integers, month arithmetic and the ``--as-of`` resolver.

A month is stored internally as ``year * 12 + (month - 1)`` so that month arithmetic is integer
arithmetic. People read and type months as ``YYYY-MM``. Every command resolves ``--as-of``
through :func:`resolve_as_of`; no other module does month arithmetic by hand.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.config import WindowConfig

_MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(text: str) -> int:
    """Parse ``YYYY-MM`` into a month index; raise ValueError with the expected form."""
    match = _MONTH_PATTERN.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a month: expected YYYY-MM")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r} is not a month: month must be 01..12")
    return year * 12 + month - 1


def format_month(index: int) -> str:
    """Format a month index as ``YYYY-MM``."""
    year, month0 = divmod(int(index), 12)
    return f"{year:04d}-{month0 + 1:02d}"


def month_range(start: int, end: int) -> list[int]:
    """All month indexes from start to end, both included."""
    return list(range(start, end + 1))


def format_months(indexes: np.ndarray, first: int, last: int) -> pd.Categorical:
    """Format an integer month array as a ``YYYY-MM`` categorical (fast for millions of rows).

    Every value must lie in ``[first, last]``.
    """
    categories = [format_month(m) for m in range(first, last + 1)]
    codes = np.asarray(indexes, dtype=np.int64) - first
    return pd.Categorical.from_codes(codes.astype(np.int32), categories=categories)


def _each_distinct(values: pd.Series, parse) -> pd.Series:
    """``parse`` (vectorised, text to nullable integers) applied to the distinct values of
    ``values`` only and spread back: a month column holds a few dozen distinct texts over
    millions of rows, and parsing every row cost the living loop's measuring minutes."""
    codes, distinct = pd.factorize(values.astype("string"))
    parsed = parse(pd.Series(distinct, dtype="string"))
    return pd.Series(
        parsed.array.take(codes, allow_fill=True), index=values.index, name=values.name
    )


def _parse_checked(text: pd.Series) -> pd.Series:
    year = pd.to_numeric(text.str.slice(0, 4), errors="coerce")
    month = pd.to_numeric(text.str.slice(5, 7), errors="coerce")
    valid = text.str.fullmatch(r"\d{4}-\d{2}") & month.between(1, 12)
    index = (year * 12 + month - 1).where(valid.fillna(False).astype(bool))
    return index.astype("Int32")


def _parse_loose(text: pd.Series) -> pd.Series:
    year = pd.to_numeric(text.str.slice(0, 4), errors="coerce")
    month = pd.to_numeric(text.str.slice(5, 7), errors="coerce")
    return (year * 12 + month - 1).astype("Int64")


def parse_month_series(values: pd.Series) -> pd.Series:
    """Vectorised parse of a ``YYYY-MM`` string series into month indexes (nullable Int32)."""
    return _each_distinct(values, _parse_checked)


def year_of(index: int) -> int:
    """The calendar year of a month index."""
    return int(index) // 12


def calendar_month(index: int) -> int:
    """The month of the year (1..12) of a month index."""
    return int(index) % 12 + 1


def month_index(year: int, month: int) -> int:
    """The month index of a calendar year and month (1..12)."""
    return int(year) * 12 + int(month) - 1


def first_day(index: int) -> datetime:
    """Midnight of the first day of a month."""
    return datetime(year_of(index), calendar_month(index), 1)


def to_month_index(values: pd.Series) -> pd.Series:
    """Month indexes (nullable Int64) from months in whatever typed form a table holds them:
    integer indexes, floats (an integer column with nulls), datetimes, periods or ``YYYY-MM``
    text (unparseable text becomes missing)."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64")
    if pd.api.types.is_float_dtype(values.dtype):
        return values.round().astype("Int64")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamp = pd.to_datetime(values)
        return (stamp.dt.year * 12 + stamp.dt.month - 1).astype("Int64")
    if isinstance(values.dtype, pd.PeriodDtype):
        return (values.dt.year * 12 + values.dt.month - 1).astype("Int64")
    return _each_distinct(values, _parse_loose)


def default_as_of(window: WindowConfig) -> int:
    """The next round after the data window: the round the pipeline prepares by default."""
    return window.round_months()[-1] + window.round_interval_months


def resolve_as_of(window: WindowConfig, text: str | None, option: str = "--as-of") -> int:
    """The round month a command works on: ``text`` (``YYYY-MM``) or the default round.

    Raises :class:`UsageError` naming the option for a malformed month, one after the data
    window's end plus one month (nothing is known there yet) or one not after the window's start
    (no fact reported before it).
    """
    if not text:
        return default_as_of(window)
    try:
        as_of = parse_month(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if as_of > window.end_index + 1:
        raise UsageError(
            f"{option} {format_month(as_of)} lies beyond the data window's end {window.end} "
            "(+1 month): nothing is known there yet"
        )
    if as_of <= window.start_index:
        raise UsageError(
            f"{option} {format_month(as_of)} is not after the data window's start {window.start}: "
            "no fact is reported before it"
        )
    return as_of
