"""Raw tables -> staged tables: pure functions of Arrow tables.

Rows set aside by validation are dropped first (by row number in their file). Crisis signals are
linked to households through the members table; resident ids become keyed pseudonyms
(``person_id``); names, resident ids, phones and addresses are dropped; coded columns become
dictionaries with the catalogue's categories and months become month indexes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import fixedwidth
from pipeline.errors import DataError
from pipeline.ingest.keys import Pseudonymizer
from pipeline.ingest.schema import STAGED_SCHEMAS
from pipeline.months import parse_month


@dataclass(frozen=True)
class Categories:
    """The categories of every coded staged column (catalogue and configuration order)."""

    by_column: Mapping[str, tuple[str, ...]]

    def of(self, column: str) -> tuple[str, ...]:
        return self.by_column[column]


def drop_rows(table: pa.Table, rows: np.ndarray | None) -> pa.Table:
    """The table without the given row numbers (quarantined rows)."""
    if rows is None or len(rows) == 0:
        return table
    keep = np.ones(table.num_rows, dtype=bool)
    keep[rows] = False
    return table.filter(pa.array(keep))


def _strings(column: pa.ChunkedArray) -> pa.Array:
    column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column.cast(pa.string())


def _positions(values: pa.ChunkedArray | pa.Array, value_set: pa.Array) -> np.ndarray:
    """Position of each value in ``value_set`` (-1 for null or absent); exact."""
    return fixedwidth.lookup(values, value_set).astype(np.int32)


def _dictionary(column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """The column as one dictionary array (cheap when Parquet already gave a dictionary)."""
    if isinstance(column, pa.ChunkedArray):
        if pa.types.is_dictionary(column.type):
            column = column.unify_dictionaries()
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    return column


def _used(encoded: pa.DictionaryArray) -> np.ndarray:
    """Which dictionary entries some row refers to.

    A dictionary may hold values of no row: rows set aside by validation are filtered out, but
    the file's dictionary keeps their values. Only the values of the rows staged are checked.
    """
    used = np.zeros(len(encoded.dictionary), dtype=bool)
    indices = encoded.indices.drop_null().to_numpy(zero_copy_only=False)
    used[indices] = True
    return used


def coded(column: pa.ChunkedArray, categories: Sequence[str], name: str) -> pa.DictionaryArray:
    """A dictionary column over fixed categories; a value outside them is a data error."""
    dictionary = pa.array(list(categories), type=pa.string())
    encoded = _dictionary(column)
    per_value = _positions(encoded.dictionary.cast(pa.string()), dictionary)
    unknown = (per_value < 0) & _used(encoded)
    if unknown.any():
        indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        rows = int(np.isin(indices, np.flatnonzero(unknown)).sum())
        raise DataError(
            f"ingest: column {name}: {rows:,} staged row(s) with value(s) outside its categories "
            f"({int(unknown.sum())} distinct) although validation passed; validate again"
        )
    indices = encoded.indices
    positions = np.append(per_value, -1)[indices.fill_null(-1).to_numpy(zero_copy_only=False)]
    mask = indices.is_null().to_numpy(zero_copy_only=False)
    new_indices = pa.array(positions, type=pa.int32(), mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(new_indices, dictionary)


def months(column: pa.ChunkedArray, name: str) -> pa.Array:
    """``YYYY-MM`` strings -> int32 month indexes (nulls stay null)."""
    encoded = _dictionary(column)
    used = _used(encoded)
    per_value = np.zeros(len(used), dtype=np.int32)
    for position, value in enumerate(encoded.dictionary.to_pylist()):
        if not used[position]:
            continue  # the value of rows set aside only
        try:
            per_value[position] = parse_month(value)
        except ValueError as exc:
            raise DataError(
                f"ingest: column {name}: a staged row is not a month ({exc}) although "
                "validation passed; validate again"
            ) from None
    indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
    values = per_value[indices] if len(per_value) else np.zeros(len(indices), dtype=np.int32)
    mask = encoded.indices.is_null().to_numpy(zero_copy_only=False)
    return pa.array(values, type=pa.int32(), mask=mask if mask.any() else None)


def _table(name: str, columns: dict[str, pa.Array]) -> pa.Table:
    schema = STAGED_SCHEMAS[name]
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _plain(column: pa.ChunkedArray, type_: pa.DataType) -> pa.Array:
    column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column.cast(type_)


def stage_households(table: pa.Table, categories: Categories) -> pa.Table:
    """Households without address and phone."""
    return _table(
        "households",
        {
            "household_key": _plain(table.column("household_key"), pa.string()),
            "emd_code": coded(table.column("emd_code"), categories.of("emd_code"), "emd_code"),
            "size": _plain(table.column("size"), pa.int8()),
            **{
                c: coded(table.column(c), categories.of(c), c)
                for c in ("tenure", "income_band", "benefit_status")
            },
        },
    )


@dataclass(frozen=True)
class StagedMembers:
    """Staged members and what linking signals to them needs."""

    table: pa.Table
    resident_ids: pa.Array  # raw ids, in memory only, to find each signal's member
    person_ids: pa.Array
    household_index: np.ndarray  # each member's row in the households table
    household_keys: pa.Array


def stage_members(
    table: pa.Table, households: pa.Table, pseudonymizer: Pseudonymizer, categories: Categories
) -> StagedMembers:
    """Members with a keyed pseudonym instead of resident id and name."""
    resident_ids = _strings(table.column("resident_id"))
    person_ids = pa.array(pseudonymizer.pseudonyms(resident_ids.to_pylist()), type=pa.string())
    household_keys = _plain(households.column("household_key"), pa.string())
    member_keys = _plain(table.column("household_key"), pa.string())
    household_index = _positions(member_keys, household_keys)
    if (household_index < 0).any():
        raise DataError("ingest: a member's household is missing although validation passed")
    staged = _table(
        "household_members",
        {
            "person_id": person_ids,
            "household_key": member_keys,
            "relation": coded(table.column("relation"), categories.of("relation"), "relation"),
            "birth_year": _plain(table.column("birth_year"), pa.int16()),
            "sex": coded(table.column("sex"), categories.of("sex"), "sex"),
            "disability": _plain(table.column("disability"), pa.bool_()),
        },
    )
    return StagedMembers(staged, resident_ids, person_ids, household_index, household_keys)


def stage_events(table: pa.Table, members: StagedMembers, categories: Categories) -> pa.Table:
    """Crisis signals linked to their household, with the person's pseudonym."""
    member = _positions(table.column("resident_id"), members.resident_ids)
    if (member < 0).any():
        raise DataError(
            f"ingest: {int((member < 0).sum())} signal(s) for unknown residents remain after "
            "quarantine; validate again"
        )
    person = pa.DictionaryArray.from_arrays(pa.array(member, type=pa.int32()), members.person_ids)
    household = pa.DictionaryArray.from_arrays(
        pa.array(members.household_index[member], type=pa.int32()), members.household_keys
    )
    return _table(
        "crisis_events",
        {
            "household_key": household,
            "person_id": person,
            "indicator_code": coded(
                table.column("indicator_code"), categories.of("indicator_code"), "indicator_code"
            ),
            "source_agency": coded(
                table.column("source_agency"), categories.of("source_agency"), "source_agency"
            ),
            "event_month": months(table.column("event_month"), "event_month"),
            "reported_month": months(table.column("reported_month"), "reported_month"),
            "value": _plain(table.column("value"), pa.float64()),
        },
    )


def stage_outcomes(table: pa.Table, categories: Categories) -> pa.Table:
    """Past outreach outcomes with typed months and coded columns."""
    return _table(
        "outreach_outcomes",
        {
            "household_key": _plain(table.column("household_key"), pa.string()),
            "emd_code": coded(table.column("emd_code"), categories.of("emd_code"), "emd_code"),
            "round_month": months(table.column("round_month"), "round_month"),
            "selection_reason": coded(
                table.column("selection_reason"),
                categories.of("selection_reason"),
                "selection_reason",
            ),
            "selection_probability": _plain(table.column("selection_probability"), pa.float64()),
            "outcome_code": coded(
                table.column("outcome_code"), categories.of("outcome_code"), "outcome_code"
            ),
            "resolved_month": months(table.column("resolved_month"), "resolved_month"),
            "service_code": coded(
                table.column("service_code"), categories.of("service_code"), "service_code"
            ),
        },
    )


def stage_regions(table: pa.Table) -> pa.Table:
    return _table(
        "regions",
        {
            "region_code": _plain(table.column("region_code"), pa.string()),
            "level": coded(table.column("level"), ("sido", "sigungu", "emd"), "level"),
            "name": _plain(table.column("name"), pa.string()),
            "parent_code": _plain(table.column("parent_code"), pa.string()),
            "sido_code": _plain(table.column("sido_code"), pa.string()),
            "sigungu_code": _plain(table.column("sigungu_code"), pa.string()),
            "emd_type": coded(table.column("emd_type"), ("동", "읍", "면"), "emd_type"),
            "urban": _plain(table.column("urban"), pa.bool_()),
        },
    )


def stage_capacity(table: pa.Table) -> pa.Table:
    return _table(
        "district_capacity",
        {
            "emd_code": _plain(table.column("emd_code"), pa.string()),
            "sigungu_code": _plain(table.column("sigungu_code"), pa.string()),
            "caseworkers": _plain(table.column("caseworkers"), pa.int32()),
            "capacity_per_round": _plain(table.column("capacity_per_round"), pa.int32()),
        },
    )
