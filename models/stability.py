"""Population stability of model inputs and scores, and the expected precision of a list.

Pure functions over arrays and frames (no files, no MLflow), shared by the stages that measure
a round: the report's PSI of the leading features (``pipeline.report.aggregates``) and the score
stage's monitoring between rounds (``pipeline.score.monitor``; docs/monitoring.md).

**PSI without the rows.** A column is kept as the count of each of its distinct values
(:class:`ValueCounts`), from which the expected round's deciles (NumPy's linear
``nanquantile``), the bin counts, hence the PSI, are exactly those of the rows; the mean too, but
for the last float32 digit. More distinct values than a ``cap`` are merged into equal-count groups
(:func:`compact`), and the counts of partitions add up (:func:`combine_value_counts`).

**Expected precision from calibrated probabilities.** If the scores are calibrated, whether a
listed household is found in need is a Bernoulli draw with its score as probability, so the
number found among ``n`` households is Poisson-binomial: mean ``sum p``, variance
``sum p (1 - p)``. :func:`expected_precision` gives ``mean p`` and a normal interval from that
variance; :func:`wilson_interval` the interval of an observed share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MISSING_TEXT = "<NA>"


@dataclass(frozen=True)
class ValueCounts:
    """How often each value of one column occurs: what PSI and the mean need, without the rows.

    Numeric columns keep their distinct values as float64, other columns the values' texts;
    both sorted, each with its count (``counts``). Missing values are counted apart
    (``missing``). ``total`` is the sum of the numeric values, ``distinct`` the number of distinct
    values (a lower bound once ``merged``: neighbouring values were merged into groups, see
    :func:`compact`).
    """

    dtype: str
    numeric: bool
    values: np.ndarray
    counts: np.ndarray
    missing: int = 0
    total: float = 0.0
    distinct: int = 0
    merged: bool = False

    @property
    def present(self) -> int:
        """Rows with a value (not missing)."""
        return int(self.counts.sum())

    @property
    def mean(self) -> float:
        """The mean of the values as pandas gives it (in the column's float precision)."""
        n = self.present
        if not self.numeric or n == 0:
            return float("nan")
        value = self.total / n
        dtype = _numpy_dtype(self.dtype)
        if dtype is not None and dtype.kind == "f" and dtype.itemsize < 8:
            value = dtype.type(value)
        return float(value)


def _numpy_dtype(name: str) -> np.dtype | None:
    try:
        dtype = pd.api.types.pandas_dtype(name)
    except TypeError:
        return None
    dtype = getattr(dtype, "numpy_dtype", dtype)
    return dtype if isinstance(dtype, np.dtype) else None


def compact(values: np.ndarray, counts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring sorted values into at most ``size`` groups of about equal count.

    Each group is represented by its smallest value and holds the counts of its values; a
    quantile then moves by less than one group (1/``size`` of the rows, plus one value's count).
    """
    if len(values) <= size:
        return values, counts
    before = np.cumsum(counts) - counts
    group = before * size // max(int(counts.sum()), 1)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return values[starts], np.add.reduceat(counts, starts).astype("int64")


def _distinct_counts(present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values of ``present`` (no NaN) and their counts, as ``np.unique``
    gives them; zeros are counted apart, because most feature columns are mostly zero and
    sorting only the rest is several times faster."""
    zero = present == 0
    rest = present[~zero]
    rest.sort()
    starts = np.flatnonzero(np.r_[True, rest[1:] != rest[:-1]])[: len(rest)]
    distinct = rest[starts]
    counts = np.diff(np.r_[starts, len(rest)]).astype("int64")
    zeros = int(zero.sum())
    if zeros:
        at = int(np.searchsorted(distinct, 0.0))
        distinct = np.insert(distinct, at, 0.0)
        counts = np.insert(counts, at, zeros)
    return distinct, counts


def value_counts(
    values: pd.Series, cap: int | None = None, where: np.ndarray | None = None
) -> ValueCounts:
    """The :class:`ValueCounts` of a column; more than ``cap`` distinct values are merged.
    ``where``: which rows count (a boolean mask; every row when None), so that a caller counting
    some rows of a wide frame does not copy the frame first."""
    dtype = str(values.dtype)
    if pd.api.types.is_numeric_dtype(values):
        # float32 columns (most features) are counted as float32: half the memory traffic of a
        # float64 copy, and the same distinct values (each float32 is exactly one float64).
        if values.dtype == np.float32:
            x = values.to_numpy()
        else:
            x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        keep = ~np.isnan(x)
        counted = len(x)
        if where is not None:
            keep &= where
            counted = int(np.count_nonzero(where))
        present = x[keep]
        distinct, counts = _distinct_counts(present)
        distinct = distinct.astype(np.float64)
        present = present.astype(np.float64, copy=False)  # the sum in float64, as before
        n = len(distinct)
        merged = cap is not None and n > cap
        if merged:
            distinct, counts = compact(distinct, counts, cap)
        return ValueCounts(
            dtype=dtype,
            numeric=True,
            values=distinct,
            counts=counts.astype("int64"),
            missing=counted - len(present),
            total=float(present.sum()),
            distinct=n,
            merged=merged,
        )
    text = values.astype("string")
    if where is not None:
        text = text[where]
    missing = int(text.isna().sum())
    found = text.dropna().value_counts(sort=False).sort_index()
    return ValueCounts(
        dtype=dtype,
        numeric=False,
        values=np.array([str(v) for v in found.index], dtype=object),
        counts=found.to_numpy(dtype="int64"),
        missing=missing,
        distinct=len(found),
    )


def _texts(counts: ValueCounts) -> pd.Series:
    """Count per text of the value (missing values as ``<NA>``), as the old frame code had it."""
    if counts.numeric:
        dtype = pd.api.types.pandas_dtype(counts.dtype)
        texts = pd.Series(counts.values).astype(dtype).astype("string").tolist()
    else:
        texts = list(counts.values)
    series = pd.Series(counts.counts, index=pd.Index(texts, dtype=object), dtype="int64")
    if counts.missing:
        series = pd.concat([series, pd.Series([counts.missing], index=[MISSING_TEXT])])
    return series.groupby(level=0).sum().astype("int64")


def _common_dtype(names: Sequence[str]) -> str:
    if len(set(names)) == 1:
        return names[0]
    try:
        return str(np.result_type(*[np.dtype(n) for n in names]))
    except TypeError:
        return "float64"


def combine_value_counts(parts: Sequence[ValueCounts], cap: int | None = None) -> ValueCounts:
    """The :class:`ValueCounts` of several partitions' rows of one column."""
    dtype = _common_dtype([p.dtype for p in parts])
    merged = any(p.merged for p in parts)
    missing = sum(p.missing for p in parts)
    if all(p.numeric for p in parts):
        values = np.concatenate([p.values for p in parts]).astype(np.float64)
        counts = np.concatenate([p.counts for p in parts]).astype("int64")
        total = float(sum(p.total for p in parts))
    else:  # mixed or text: compare texts
        texts = [_texts(p) for p in parts]
        values = np.array([v for t in texts for v in t.index if v != MISSING_TEXT], dtype=object)
        counts = np.array(
            [c for t in texts for v, c in t.items() if v != MISSING_TEXT], dtype="int64"
        )
        missing = int(sum(t.get(MISSING_TEXT, 0) for t in texts))
        total = 0.0
    distinct_values, inverse = np.unique(values, return_inverse=True)
    summed = np.zeros(len(distinct_values), dtype="int64")
    np.add.at(summed, inverse, counts)
    distinct = len(distinct_values)
    if merged:
        distinct = max(distinct, *(p.distinct for p in parts))
    numeric = all(p.numeric for p in parts)
    if numeric and cap is not None and len(distinct_values) > cap:
        distinct_values, summed = compact(distinct_values, summed, cap)
        merged = True
    return ValueCounts(
        dtype=dtype if numeric else "string",
        numeric=numeric,
        values=distinct_values,
        counts=summed,
        missing=missing,
        total=total,
        distinct=distinct,
        merged=merged,
    )


def quantiles(counts: ValueCounts, probs: np.ndarray) -> np.ndarray:
    """``np.nanquantile(values, probs)`` (linear method) of the values the counts stand for."""
    n = counts.present
    virtual = (n - 1) * probs
    below = np.floor(virtual)
    gamma = virtual - below
    last = n - 1
    prev = np.minimum(below, last).astype(np.int64)
    nxt = np.minimum(below + 1, last).astype(np.int64)
    cum = np.cumsum(counts.counts)
    a = counts.values[np.searchsorted(cum, prev, side="right")]
    b = counts.values[np.searchsorted(cum, nxt, side="right")]
    diff = b - a
    out = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), out)


def psi_bins(
    expected: ValueCounts, actual: ValueCounts, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both rounds in the same bins (numeric: the last bin holds missing values).

    Numeric values with more than ``bins`` distinct values are cut at ``expected``'s quantiles
    (ties merged): (-inf, q1], (q1, q2], ..., (qk, inf), then missing. Other values get one bin
    per text of the value seen in either round (missing as ``<NA>``).
    """
    if expected.numeric and actual.numeric and expected.distinct > bins:
        probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(quantiles(expected, probs))
        size = len(edges) + 2

        def binned(c: ValueCounts) -> np.ndarray:
            codes = np.searchsorted(edges, c.values, side="left")
            out = np.zeros(size, dtype="int64")
            np.add.at(out, codes, c.counts)
            out[-1] += c.missing
            return out

        return binned(expected), binned(actual)
    e = _texts(expected)
    a = _texts(actual)
    categories = sorted(set(e.index) | set(a.index))
    return (
        e.reindex(categories, fill_value=0).to_numpy(),
        a.reindex(categories, fill_value=0).to_numpy(),
    )


def psi_from_counts(
    expected: ValueCounts, actual: ValueCounts, bins: int = 10, floor: float = 1e-4
) -> float:
    """PSI of ``actual`` against ``expected`` (see :func:`psi`), from their value counts."""
    e_counts, a_counts = psi_bins(expected, actual, bins)
    if e_counts.sum() == 0 or a_counts.sum() == 0:
        return float("nan")
    e = np.maximum(e_counts / e_counts.sum(), floor)
    a = np.maximum(a_counts / a_counts.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(expected: pd.Series, actual: pd.Series, bins: int = 10, floor: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected``.

    Numeric values with more than ``bins`` distinct values are cut at ``expected``'s quantiles
    (ties merged); other values get one bin per value. Missing values have their own bin. Bin
    shares are floored at ``floor`` so that an empty bin gives a large but finite term.
    PSI = sum((a - e) * ln(a / e)).
    """
    return psi_from_counts(
        value_counts(pd.Series(expected)), value_counts(pd.Series(actual)), bins, floor
    )


# --- expected precision (Poisson-binomial) ----------------------------------------------------


def z_value(level: float) -> float:
    """The two-sided normal quantile of a confidence ``level`` (0.9 → 1.645)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(0.5 + level / 2))


@dataclass(frozen=True)
class ExpectedPrecision:
    """The precision a list is expected to reach if its scores are calibrated.

    ``n`` households, ``expected`` = mean score, ``sd`` = sqrt(sum p (1 - p)) / n (the standard
    deviation of the share found in need), ``low``/``high`` = expected ∓ z·sd clipped to [0, 1].
    """

    n: int
    expected: float
    sd: float
    low: float
    high: float

    def as_dict(self, digits: int = 6) -> dict[str, float | int | None]:
        def r(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), digits)

        return {
            "n": self.n,
            "expected": r(self.expected),
            "sd": r(self.sd),
            "low": r(self.low),
            "high": r(self.high),
        }


def precision_sums(scores: np.ndarray) -> tuple[int, float, float]:
    """``(n, sum p, sum p (1 - p))`` of some scores: what :func:`expected_from_sums` needs, and
    what partitions add up."""
    p = np.asarray(scores, dtype=np.float64)
    p = p[~np.isnan(p)]
    return len(p), float(p.sum()), float((p * (1.0 - p)).sum())


def expected_from_sums(n: int, total: float, variance: float, level: float) -> ExpectedPrecision:
    """:class:`ExpectedPrecision` of ``n`` households from their :func:`precision_sums`."""
    if n <= 0:
        nan = float("nan")
        return ExpectedPrecision(0, nan, nan, nan, nan)
    mean = total / n
    sd = math.sqrt(max(variance, 0.0)) / n
    z = z_value(level)
    return ExpectedPrecision(n, mean, sd, max(0.0, mean - z * sd), min(1.0, mean + z * sd))


def expected_precision(scores: Sequence[float] | np.ndarray, level: float) -> ExpectedPrecision:
    """The precision ``scores`` (calibrated probabilities of need) promise, with a ``level``
    interval from the Poisson-binomial variance (normal approximation)."""
    return expected_from_sums(*precision_sums(np.asarray(scores, dtype=np.float64)), level)


def wilson_interval(positives: int, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval of an observed share ``positives / n`` (nan, nan when n is 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = z_value(level)
    p = positives / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
