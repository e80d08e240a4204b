"""The staged tables' schemas, and a reader that gives them back with their pandas types.

Staged tables carry no direct identifier. Coded columns are Arrow dictionaries (pandas reads them
as categoricals) whose categories come from the catalogues and configuration, in their order.
Months are ``int32`` month indexes, ``year * 12 + month - 1`` as in :mod:`pipeline.months`
(``format_month`` turns one back into ``YYYY-MM``); each month field says so in its metadata.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.datasets import TableLayout

MONTH_NOTE = "month index: year * 12 + month - 1 (pipeline.months.format_month gives YYYY-MM)"
PERSON_NOTE = "keyed pseudonym of the resident id (HMAC-SHA256, see the ingest manifest)"

DICT = pa.dictionary(pa.int32(), pa.string())


def _month(name: str) -> pa.Field:
    return pa.field(name, pa.int32(), metadata={"description": MONTH_NOTE})


STAGED_SCHEMAS: dict[str, pa.Schema] = {
    "regions": pa.schema(
        [
            ("region_code", pa.string()),
            ("level", DICT),
            ("name", pa.string()),
            ("parent_code", pa.string()),
            ("sido_code", pa.string()),
            ("sigungu_code", pa.string()),
            ("emd_type", DICT),
            ("urban", pa.bool_()),
        ]
    ),
    "district_capacity": pa.schema(
        [
            ("emd_code", pa.string()),
            ("sigungu_code", pa.string()),
            ("caseworkers", pa.int32()),
            ("capacity_per_round", pa.int32()),
        ]
    ),
    "households": pa.schema(
        [
            ("household_key", pa.string()),
            ("emd_code", DICT),
            ("size", pa.int8()),
            ("tenure", DICT),
            ("income_band", DICT),
            ("benefit_status", DICT),
        ]
    ),
    "household_members": pa.schema(
        [
            pa.field("person_id", pa.string(), metadata={"description": PERSON_NOTE}),
            ("household_key", pa.string()),
            ("relation", DICT),
            ("birth_year", pa.int16()),
            ("sex", DICT),
            ("disability", pa.bool_()),
        ]
    ),
    "crisis_events": pa.schema(
        [
            ("household_key", DICT),
            pa.field("person_id", DICT, metadata={"description": PERSON_NOTE}),
            ("indicator_code", DICT),
            ("source_agency", DICT),
            _month("event_month"),
            _month("reported_month"),
            ("value", pa.float64()),
        ]
    ),
    "outreach_outcomes": pa.schema(
        [
            ("household_key", pa.string()),
            ("emd_code", DICT),
            _month("round_month"),
            ("selection_reason", DICT),
            ("selection_probability", pa.float64()),
            ("outcome_code", DICT),
            _month("resolved_month"),
            ("service_code", DICT),
        ]
    ),
}

# Columns of the raw tables that never reach a staged table.
DROPPED_COLUMNS: dict[str, tuple[str, ...]] = {
    "households": ("address", "phone"),
    "household_members": ("resident_id", "name"),
    "crisis_events": ("resident_id",),
}


def read_staged(
    root: Path, table: str, sigungu: str | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """A staged table (one partition, all partitions, or a small table) as pandas.

    Coded columns come back as categoricals and the nullable month (``resolved_month``) as
    ``Int32`` rather than float.
    """
    layout = TableLayout(root)
    if table in ("regions", "district_capacity"):
        paths = [layout.small_table_file(table)]
    elif sigungu is not None:
        paths = [layout.partition_file(table, sigungu)]
    else:
        paths = [layout.partition_file(table, c) for c in layout.partitions(table)]
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        schema = STAGED_SCHEMAS[table]
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        tables = [schema.empty_table()]
    data = pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()
    nullable = {
        "outreach_outcomes": {pa.int32(): pd.Int32Dtype()},
        "regions": {pa.bool_(): pd.BooleanDtype()},
    }
    mapper = nullable.get(table)
    return data.to_pandas(types_mapper=mapper.get if mapper else None)
