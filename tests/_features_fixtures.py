"""Small in-memory feature inputs cut from the committed sample (identifiers dropped)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.build import FeatureInputs
from pipeline.datasets import TableLayout
from pipeline.months import parse_month_series


def sample_inputs(raw_dir: Path, households: int = 300, partition: int = 0) -> FeatureInputs:
    """The first ``households`` households of one sample partition, in the builder's shape."""
    raw = TableLayout(raw_dir)
    code = raw.partitions("households")[partition]
    hh = pd.read_parquet(raw.partition_file("households", code)).head(households)
    hh = hh.drop(columns=["address", "phone"])
    keys = set(hh["household_key"])
    members = pd.read_parquet(raw.partition_file("household_members", code))
    members = members[members["household_key"].isin(keys)]
    events = pd.read_parquet(raw.partition_file("crisis_events", code))
    events = events.merge(members[["resident_id", "household_key"]], on="resident_id")
    events = pd.DataFrame(
        {
            "household_key": events["household_key"],
            "indicator_code": events["indicator_code"],
            "reported_month": parse_month_series(events["reported_month"]).astype("int64"),
            "value": events["value"],
        }
    ).reset_index(drop=True)
    outcomes = pd.read_parquet(raw.partition_file("outreach_outcomes", code))
    outcomes = outcomes[outcomes["household_key"].isin(keys)].copy()
    outcomes["round_month"] = parse_month_series(outcomes["round_month"]).astype("int64")
    outcomes["resolved_month"] = parse_month_series(outcomes["resolved_month"])
    regions = pd.read_parquet(raw.small_table_file("regions"))
    urban = frozenset(
        regions.loc[(regions["level"] == "emd") & regions["urban"].astype(bool), "region_code"]
    )
    return FeatureInputs(
        households=hh.reset_index(drop=True),
        members=members.drop(columns=["resident_id", "name"]).reset_index(drop=True),
        events=events,
        outcomes=outcomes.reset_index(drop=True),
        urban_emds=urban,
    )
