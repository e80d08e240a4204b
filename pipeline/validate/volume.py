"""Volume bounds: signals per source and reported month, against that source's previous months.

Counts are summed over all 시군구 partitions first (a national figure), then, for each source
(indicator) and month from the month it starts delivering:

- its first ``warmup_months`` months are not checked and not used as reference: signals of
  earlier events arrive with a lag, so a new source (or the start of the window) ramps up;
- the reference is the median of the source's previous ``reference_months`` months after the
  warm-up; with fewer than ``min_reference_months`` of them the month is not checked yet, nor
  when the reference is below ``min_reference_signals`` (a source that delivers a handful a
  month varies by chance far beyond what the bounds would allow);
- ``lower = reference * low_factor - poisson_slack * sqrt(reference)`` and
  ``upper = reference * high_factor + poisson_slack * sqrt(reference)`` (``high_factor`` may be
  set per source for bursty ones, e.g. disaster damage).

The median ignores one bad month among the reference months, so a source that stops delivering
for a month, or delivers a month twice, fails that month without hiding the next one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.config import VolumeConfig
from pipeline.months import format_month, parse_month

VOLUME_COLUMNS = (
    "indicator_code",
    "reported_month",
    "signals",
    "reference",
    "reference_months",
    "lower",
    "upper",
    "status",
)


def combine_counts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Sum per-partition counts (indicator_code, reported_month, signals) into national ones."""
    frames = [p for p in parts if p is not None and len(p)]
    if not frames:
        return pd.DataFrame({"indicator_code": [], "reported_month": [], "signals": []})
    combined = pd.concat(frames, ignore_index=True)
    return (
        combined.groupby(["indicator_code", "reported_month"], sort=True)["signals"]
        .sum()
        .reset_index()
    )


def volume_bounds(
    counts: pd.DataFrame,
    first_month: Mapping[str, int],
    window_end: int,
    config: VolumeConfig,
) -> pd.DataFrame:
    """Bounds and status for every source and month from its first month to the window end.

    ``first_month`` maps each indicator code to the month index it starts delivering (its
    ``available_from`` or the window start). ``status`` is ``checked``, ``warm-up``,
    ``learning`` (not enough reference months) or ``too few`` (a reference below
    ``min_reference_signals``); bounds are NaN when not checked.
    """
    by_key = {
        (str(r.indicator_code), parse_month(str(r.reported_month))): int(r.signals)
        for r in counts.itertuples(index=False)
    }
    rows: list[dict[str, object]] = []
    for code, first in first_month.items():
        high = config.high_factor_by_source.get(code, config.high_factor)
        low = config.low_factor_by_source.get(code, config.low_factor)
        series = [by_key.get((code, m), 0) for m in range(first, window_end + 1)]
        for position, signals in enumerate(series):
            month = first + position
            row: dict[str, object] = {
                "indicator_code": code,
                "reported_month": format_month(month),
                "signals": signals,
                "reference": math.nan,
                "reference_months": 0,
                "lower": math.nan,
                "upper": math.nan,
            }
            if position < config.warmup_months:
                row["status"] = "warm-up"
                rows.append(row)
                continue
            start = max(config.warmup_months, position - config.reference_months)
            reference_counts = series[start:position]
            row["reference_months"] = len(reference_counts)
            if len(reference_counts) < config.min_reference_months:
                row["status"] = "learning"
                rows.append(row)
                continue
            reference = float(np.median(reference_counts))
            row["reference"] = reference
            if reference < config.min_reference_signals:
                row["status"] = "too few"  # a handful a month: chance, not a delivery error
                rows.append(row)
                continue
            slack = config.poisson_slack * math.sqrt(reference)
            row["lower"] = max(0.0, math.floor(reference * low - slack))
            row["upper"] = math.ceil(reference * high + slack)
            row["status"] = "checked"
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(VOLUME_COLUMNS))
    frame["signals"] = frame["signals"].astype("int64")
    frame["reference_months"] = frame["reference_months"].astype("int64")
    for column in ("reference", "lower", "upper"):
        frame[column] = frame[column].astype("float64")
    return frame


def source_first_months(
    codes_and_starts: Mapping[str, int | None], window_start: int
) -> dict[str, int]:
    """First month each source delivers: its ``available_from``, or the window start."""
    return {
        code: window_start if start is None else max(window_start, start)
        for code, start in codes_and_starts.items()
    }
