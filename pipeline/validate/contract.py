"""The raw data contract: columns and types of every raw table, and which columns identify a person.

Logical types map to the pandas dtypes Great Expectations sees on a frame built from the Parquet
schema (``ExpectColumnValuesToBeInTypeList``). Direct identifiers are never handed to Great
Expectations and never written by validation: checks on them run on row-level surrogates.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.datasets import PARTITIONED_RAW_TABLES, SMALL_RAW_TABLES

LOGICAL_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("str", "string"),
    "integer": ("int8", "int16", "int32", "int64"),
    "number": ("float32", "float64", "int8", "int16", "int32", "int64"),
    "boolean": ("bool", "boolean"),
}

# Direct identifiers in the raw tables (DESIGN.md): they must never leave ingest.
DIRECT_IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "households": ("address", "phone"),
    "household_members": ("resident_id", "name"),
    "crisis_events": ("resident_id",),
}


@dataclass(frozen=True)
class TableContract:
    """What one raw table must look like."""

    name: str
    columns: dict[str, str]  # column -> logical type
    partitioned: bool
    example_columns: tuple[str, ...]  # columns of the checked frame that name example rows

    @property
    def identifiers(self) -> tuple[str, ...]:
        return DIRECT_IDENTIFIERS.get(self.name, ())


CONTRACTS: dict[str, TableContract] = {
    "regions": TableContract(
        "regions",
        {
            "region_code": "string",
            "level": "string",
            "name": "string",
            "parent_code": "string",
            "sido_code": "string",
            "sigungu_code": "string",
            "emd_type": "string",
            "urban": "boolean",
        },
        partitioned=False,
        example_columns=("region_code",),
    ),
    "district_capacity": TableContract(
        "district_capacity",
        {
            "emd_code": "string",
            "sigungu_code": "string",
            "caseworkers": "integer",
            "capacity_per_round": "integer",
        },
        partitioned=False,
        example_columns=("emd_code",),
    ),
    "households": TableContract(
        "households",
        {
            "household_key": "string",
            "emd_code": "string",
            "size": "integer",
            "tenure": "string",
            "income_band": "string",
            "benefit_status": "string",
            "address": "string",
            "phone": "string",
        },
        partitioned=True,
        example_columns=("household_key", "sigungu"),
    ),
    "household_members": TableContract(
        "household_members",
        {
            "resident_id": "string",
            "name": "string",
            "household_key": "string",
            "relation": "string",
            "birth_year": "integer",
            "sex": "string",
            "disability": "boolean",
        },
        partitioned=True,
        # Members and events are keyed by resident id: examples name the row, never the person.
        example_columns=("sigungu", "row"),
    ),
    "crisis_events": TableContract(
        "crisis_events",
        {
            "resident_id": "string",
            "indicator_code": "string",
            "event_month": "string",
            "reported_month": "string",
            "value": "number",
            "source_agency": "string",
        },
        partitioned=True,
        example_columns=("sigungu", "row"),
    ),
    "outreach_outcomes": TableContract(
        "outreach_outcomes",
        {
            "household_key": "string",
            "emd_code": "string",
            "round_month": "string",
            "selection_reason": "string",
            "selection_probability": "number",
            "outcome_code": "string",
            "resolved_month": "string",
            "service_code": "string",
        },
        partitioned=True,
        example_columns=("household_key", "round_month", "sigungu", "row"),
    ),
}

assert set(CONTRACTS) == set(SMALL_RAW_TABLES) | set(PARTITIONED_RAW_TABLES)

# Frames checked outside any one raw table (national figures combined from partitions).
VOLUME_SUITE = "crisis_events_volume"
UNIQUE_ACROSS_SUITE = "keys_across_partitions"
PARTITIONS_SUITE = "partitions"
FILE_ROWS_SUITE = "file_rows"
# Partitioned tables whose every file must have rows (a 시군구 may have had no outreach yet).
NON_EMPTY_TABLES = ("households", "household_members", "crisis_events")

# Columns of the checked frames that stand for raw columns (surrogates of identifiers, joins,
# month numbers, the catalogue's bounds): messages name the raw column (None: not a raw column,
# e.g. the partition or a bound). Columns not listed here are raw columns.
RAW_COLUMN_OF: dict[str, str | None] = {
    "resident_ref": "resident_id",
    "member_row": "resident_id",
    "signal_key": "resident_id, indicator_code, event_month",
    "household_row": "household_key",
    "emd_sigungu": "emd_code",
    "sigungu": None,
    "emd_code_text": "emd_code",
    "household_emd": None,
    "outcome_resolution": "outcome_code, resolved_month",
    "indicator_source": "indicator_code, source_agency",
    "event_month_num": "event_month",
    "reported_month_num": "reported_month",
    "round_month_num": "round_month",
    "resolved_month_num": "resolved_month",
    "source_start_num": "indicator_code",
    "value_min": None,
    "value_max": None,
    "value_min_stop": None,
    "value_max_stop": None,
    "lower": None,
    "upper": None,
}
# The key hashed into ``key_hash`` by the check across partitions, per table.
KEY_HASHED: dict[str, str] = {"households": "household_key", "household_members": "resident_id"}
