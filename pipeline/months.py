"""Calendar months as integers.

A month is stored internally as ``year * 12 + (month - 1)`` so that month arithmetic is integer
arithmetic. People read and type months as ``YYYY-MM``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

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


def parse_month_series(values: pd.Series) -> pd.Series:
    """Vectorised parse of a ``YYYY-MM`` string series into month indexes (nullable Int32)."""
    text = values.astype("string")
    year = pd.to_numeric(text.str.slice(0, 4), errors="coerce")
    month = pd.to_numeric(text.str.slice(5, 7), errors="coerce")
    valid = text.str.fullmatch(r"\d{4}-\d{2}") & month.between(1, 12)
    index = (year * 12 + month - 1).where(valid.fillna(False).astype(bool))
    return index.astype("Int32")
