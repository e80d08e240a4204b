"""Read one staged partition into the builder's input shape. The only place that knows the
staged layout (written by ``outreach ingest``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.build import FeatureInputs
from pipeline.datasets import TableLayout
from pipeline.errors import DataError


def to_month_index(values: pd.Series) -> pd.Series:
    """Month indexes (year*12 + month-1) from staged months, whatever typed form they take."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64")
    if pd.api.types.is_float_dtype(values.dtype):  # an integer column with nulls read as float
        return values.round().astype("Int64")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamp = pd.to_datetime(values)
        return (stamp.dt.year * 12 + stamp.dt.month - 1).astype("Int64")
    if isinstance(values.dtype, pd.PeriodDtype):
        return (values.dt.year * 12 + values.dt.month - 1).astype("Int64")
    text = values.astype("string")
    year = pd.to_numeric(text.str.slice(0, 4), errors="coerce")
    month = pd.to_numeric(text.str.slice(5, 7), errors="coerce")
    return (year * 12 + month - 1).astype("Int64")


def staged_partitions(staged_dir: Path) -> list[str]:
    """시군구 codes with a staged households partition."""
    return TableLayout(staged_dir).partitions("households")


def _read(layout: TableLayout, table: str, code: str, columns: list[str]) -> pd.DataFrame:
    path = layout.partition_file(table, code)
    if not path.is_file():
        raise DataError(f"{path}: staged table missing: run `outreach ingest` again")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: staged table lacks column(s) {', '.join(missing)}")
    return frame[columns]


def read_feature_inputs(staged_dir: Path, code: str) -> FeatureInputs:
    """The staged tables of one 시군구 partition, typed for ``build_features``."""
    layout = TableLayout(staged_dir)
    households = _read(
        layout, "households", code,
        ["household_key", "emd_code", "size", "tenure", "income_band", "benefit_status"],
    )  # fmt: skip
    members = _read(
        layout, "household_members", code,
        ["household_key", "relation", "birth_year", "sex", "disability"],
    )  # fmt: skip
    events = _read(
        layout,
        "crisis_events",
        code,
        ["household_key", "indicator_code", "reported_month", "value"],
    )
    events = events.assign(
        reported_month=to_month_index(events["reported_month"]).to_numpy(dtype=np.int64)
    )
    outcomes = _read(
        layout, "outreach_outcomes", code,
        ["household_key", "emd_code", "round_month", "selection_reason", "selection_probability",
         "outcome_code", "resolved_month"],
    )  # fmt: skip
    outcomes = outcomes.assign(
        round_month=to_month_index(outcomes["round_month"]).to_numpy(dtype=np.int64),
        resolved_month=to_month_index(outcomes["resolved_month"]),
    )
    regions_file = layout.small_table_file("regions")
    if not regions_file.is_file():
        raise DataError(f"{regions_file}: staged regions missing: run `outreach ingest` again")
    regions = pd.read_parquet(regions_file)
    urban = regions[
        (regions["level"].astype("string") == "emd") & regions["urban"].fillna(False).astype(bool)
    ]
    return FeatureInputs(
        households=households,
        members=members,
        events=events,
        outcomes=outcomes,
        urban_emds=frozenset(urban["region_code"].astype("string")),
    )
