"""What MLflow records of a dataset, gathered without holding the dataset whole.

``mlflow.data.from_pandas`` records a digest, a schema and a profile of a frame. Its digest
(``mlflow.data.digest_utils.compute_pandas_digest``) hashes the first 10,000 rows, the row count
and the column names; of the columns it keeps the numeric ones and those whose every value is a
``str`` (found by calling ``type`` on every cell of the frame: minutes on a national table). The
schema marks a column required when it has no missing value; the profile counts rows and cells.

All of these can be gathered partition by partition: :class:`DatasetSummary` holds the first rows
and per-column flags, and gives the digest MLflow computes on the whole frame (the tests check it
against MLflow's own function).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DIGEST_ROWS = 10_000  # mlflow.data.digest_utils.MAX_ROWS: rows the digest hashes


def all_text(values: pd.Series) -> bool:
    """Whether every value is a Python ``str`` (what MLflow's digest tests with ``type``)."""
    if len(values) == 0:
        return True  # MLflow's test is vacuously true on no rows
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        if (codes < 0).any():
            return False
        used = values.cat.categories.take(np.unique(codes))
        return all(type(v) is str for v in used)
    if isinstance(dtype, pd.StringDtype) or str(dtype) == "str":
        return bool(values.notna().all())
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return False
    return bool(values.map(type).eq(str).all())


def column_flags(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per column: whether some value is missing, and whether every value is a ``str``."""
    missing = frame.isna().any()
    text = pd.Series({c: all_text(frame[c]) for c in frame.columns}, dtype=bool)
    return missing, text


@dataclass(frozen=True)
class DatasetSummary:
    """The first rows of a frame, its row count and per-column flags: enough for MLflow."""

    head: pd.DataFrame  # the first min(DIGEST_ROWS, rows) rows, in the frame's order
    rows: int
    missing: pd.Series  # column -> some value is missing
    text: pd.Series  # column -> every value is a str

    @classmethod
    def of(cls, frame: pd.DataFrame) -> DatasetSummary:
        missing, text = column_flags(frame)
        return cls(frame.head(DIGEST_ROWS), len(frame), missing, text)

    @classmethod
    def from_parts(
        cls,
        head: pd.DataFrame,
        rows: int,
        flags: list[tuple[pd.Series, pd.Series]],
    ) -> DatasetSummary:
        """Combine the flags of partitions (:func:`column_flags` of each) with the first rows."""
        if len(head) < min(DIGEST_ROWS, rows):
            raise ValueError(f"{len(head)} first rows given, {min(DIGEST_ROWS, rows)} needed")
        columns = head.columns
        missing = pd.Series(False, index=columns, dtype=bool)
        text = pd.Series(True, index=columns, dtype=bool)
        for part_missing, part_text in flags:
            missing |= part_missing.reindex(columns, fill_value=False).astype(bool)
            text &= part_text.reindex(columns, fill_value=True).astype(bool)
        return cls(head.head(DIGEST_ROWS).reset_index(drop=True), rows, missing, text)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.head.columns]
