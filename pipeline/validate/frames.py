"""Checked frames: raw tables turned into compact frames that Great Expectations evaluates.

Pure functions of Arrow tables. String columns become categoricals, months also appear as
``YYYYMM`` integers (``*_num``), joins to other tables become row numbers (``*_row``, null when
the key is unknown), and direct identifiers are replaced by surrogates: ``resident_ref`` numbers
the distinct resident ids of a partition, so it is null exactly when the id is null and repeats
exactly when the id repeats, but says nothing about the person. Every frame carries the
partition (``sigungu``) and the row number in its file (``row``), which name example rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import union_categoricals

from pipeline import fixedwidth
from pipeline.validate.checks import (
    BOUND_COLUMNS,
    SuiteInputs,
    bound_modes,
    indicator_source_label,
    month_num,
    outcome_resolution_label,
)


@dataclass(frozen=True)
class Encoded:
    """A string column as dictionary codes (-1 for null) and its distinct values."""

    codes: np.ndarray
    values: pd.Index

    def categorical(self) -> pd.Categorical:
        return pd.Categorical.from_codes(self.codes, categories=self.values)

    def mapped(self, per_value: np.ndarray, missing: int = -1) -> np.ndarray:
        """Per-row values of an integer array given per distinct value (``missing`` if null)."""
        per_value = np.asarray(per_value, dtype=np.int64)
        padded = np.append(per_value, missing)  # code -1 picks the last element
        return padded[self.codes]


def encode(column: pa.ChunkedArray) -> Encoded:
    """Dictionary-encode a string column (dictionary columns only have their chunks unified)."""
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()
    else:
        column = pc.dictionary_encode(column)
    if column.num_chunks == 0:
        return Encoded(np.zeros(0, dtype=np.int32), pd.Index([], dtype="str"))
    dictionary = column.chunk(0).dictionary
    codes = np.concatenate(
        [c.indices.fill_null(-1).to_numpy(zero_copy_only=False) for c in column.chunks]
    ).astype(np.int32, copy=False)
    values = pd.Index(dictionary.to_pandas(), dtype="str")
    if not values.is_unique:  # a dictionary with repeated values: factorise it again
        new_codes, uniques = pd.factorize(values)
        codes = np.where(codes >= 0, new_codes[np.maximum(codes, 0)], -1).astype(np.int32)
        values = pd.Index(uniques, dtype="str")
    return Encoded(codes, values)


def nullable_int(values: np.ndarray) -> np.ndarray | pd.arrays.IntegerArray:
    """Integers with nulls where ``values`` is negative (the -1 of unknown lookups).

    Plain int64 when nothing is null (pandas checks those several times faster), else Int64.
    """
    values = np.asarray(values, dtype=np.int64)
    missing = values < 0
    return pd.arrays.IntegerArray(values, missing) if missing.any() else values


def _month_nums(encoded: Encoded) -> pd.arrays.IntegerArray:
    per_value = np.array([month_num(v) or -1 for v in encoded.values], dtype=np.int64)
    return nullable_int(encoded.mapped(per_value))


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_pandas().to_numpy(dtype="float64", na_value=np.nan)


def _row(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def _partition(code: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[code])


def _lookup(keys: pa.ChunkedArray, value_set: pa.Array) -> np.ndarray:
    """Position of every key in ``value_set`` (-1: null or not there)."""
    return fixedwidth.lookup(keys, value_set)


def strings(column: pa.ChunkedArray) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column


@dataclass(frozen=True)
class Residents:
    """A partition's distinct resident ids and the member row of each (its first row)."""

    values: pa.Array
    first_row: np.ndarray

    def hashes(self) -> np.ndarray:
        """64-bit hashes of the distinct resident ids (compared across partitions)."""
        return fixedwidth.hash_strings(self.values)


def households_frame(table: pa.Table, code: str, emd_sigungu: dict[str, str]) -> pd.DataFrame:
    """The checked frame of a households file (address and phone are not read)."""
    n = table.num_rows
    emd = encode(table.column("emd_code"))
    sigungu_codes = sorted(set(emd_sigungu.values()) | {code})
    position = {c: i for i, c in enumerate(sigungu_codes)}
    per_value = np.array(
        [position.get(emd_sigungu.get(v, ""), -1) for v in emd.values], dtype=np.int64
    )
    return pd.DataFrame(
        {
            "sigungu": pd.Categorical.from_codes(
                np.full(n, position[code], dtype=np.int32), categories=sigungu_codes
            ),
            "row": _row(n),
            "household_key": table.column("household_key").to_pandas(),
            "emd_code": emd.categorical(),
            "emd_sigungu": pd.Categorical.from_codes(
                emd.mapped(per_value), categories=sigungu_codes
            ),
            "size": _numbers(table.column("size")),
            "tenure": encode(table.column("tenure")).categorical(),
            "income_band": encode(table.column("income_band")).categorical(),
            "benefit_status": encode(table.column("benefit_status")).categorical(),
        },
        copy=False,
    )


def members_frame(
    table: pa.Table, code: str, household_keys: pa.Array
) -> tuple[pd.DataFrame, Residents]:
    """The checked frame of a members file (names are not read), and its residents."""
    n = table.num_rows
    codes, values = fixedwidth.factorize(table.column("resident_id"))
    rows = _row(n)
    first_row = np.full(len(values), -1, dtype=np.int64)
    present = codes >= 0
    first_row[codes[present][::-1]] = rows[present][::-1]
    disability = table.column("disability")
    frame = pd.DataFrame(
        {
            "sigungu": _partition(code, n),
            "row": rows,
            "resident_ref": nullable_int(codes),
            "household_key": table.column("household_key").to_pandas(),
            "household_row": nullable_int(_lookup(table.column("household_key"), household_keys)),
            "relation": encode(table.column("relation")).categorical(),
            "birth_year": _numbers(table.column("birth_year")),
            "sex": encode(table.column("sex")).categorical(),
            "disability": disability.to_pandas().astype("boolean")
            if disability.null_count
            else disability.to_numpy(),
        },
        copy=False,
    )
    return frame, Residents(values, first_row)


@dataclass(frozen=True)
class EventFrames:
    """A crisis-events file as a row frame and a frame of distinct value combinations."""

    rows: pd.DataFrame  # one row per signal
    domain: pd.DataFrame  # one row per distinct (indicator, agency, event, reported month)
    combination: np.ndarray  # combination id of every signal (maps failing combinations to rows)


def _pair_labels(
    first: Encoded, second: Encoded, label: Callable[[str, str], str]
) -> tuple[np.ndarray, list[str]]:
    """Codes and labels of the pairs of two encoded columns (-1 where either is null)."""
    width = max(len(second.values), 1)
    combined = np.where(
        (first.codes >= 0) & (second.codes >= 0),
        first.codes.astype(np.int64) * width + second.codes,
        -1,
    )
    present = np.unique(combined[combined >= 0])
    labels = [label(first.values[c // width], second.values[c % width]) for c in present]
    codes = np.where(combined >= 0, np.searchsorted(present, combined), -1)
    return codes, labels


def _resident_refs(
    ids: pa.ChunkedArray, residents: Residents | None
) -> tuple[np.ndarray, np.ndarray]:
    """Member row of each signal's resident (-1: unknown) and a resident surrogate.

    The surrogate is the resident's position among the partition's members, or a number after
    them for ids that are not members; it is equal exactly when the ids are equal (-1: null).
    """
    n = len(ids)
    if residents is None or len(residents.first_row) == 0:
        known = np.full(n, -1, dtype=np.int64)
        member_row = known.copy()
        offset = 0
    else:
        known = _lookup(ids, residents.values)
        member_row = np.where(known >= 0, residents.first_row[np.maximum(known, 0)], -1)
        offset = len(residents.values)
    resident_ref = known.copy()
    unknown = (known < 0) & ids.is_valid().to_numpy(zero_copy_only=False)
    if unknown.any():
        others = encode(pa.chunked_array([strings(ids).filter(pa.array(unknown))]))
        resident_ref[unknown] = others.codes.astype(np.int64) + offset
    return member_row, resident_ref


def _combinations(
    columns: list[Encoded], code: str, inputs: SuiteInputs
) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct (indicator, agency, event month, reported month) of a file, and the
    combination of every row."""
    n = len(columns[0].codes)
    widths = [len(e.values) + 1 for e in columns]
    combined = np.zeros(n, dtype=np.int64)
    for encoded, width in zip(columns, widths, strict=True):
        combined = combined * width + (encoded.codes.astype(np.int64) + 1)
    combination, uniques = pd.factorize(combined)
    first_row = np.full(len(uniques), -1, dtype=np.int64)
    first_row[combination[::-1]] = np.arange(n, dtype=np.int64)[::-1]
    codes: list[np.ndarray] = []
    remainder = uniques.astype(np.int64)
    for width in reversed(widths):
        codes.insert(0, remainder % width - 1)
        remainder = remainder // width
    indicator, source, event, reported = (
        Encoded(c.astype(np.int32), e.values) for c, e in zip(codes, columns, strict=True)
    )
    pair_codes, pair_values = _pair_labels(indicator, source, indicator_source_label)
    starts = dict(inputs.source_start_num)
    start_per_value = np.array([starts.get(v, -1) for v in indicator.values], dtype=np.int64)
    domain = pd.DataFrame(
        {
            "sigungu": _partition(code, len(uniques)),
            "combination": np.arange(len(uniques), dtype=np.int64),
            "first_row": first_row,
            "rows": np.bincount(combination, minlength=len(uniques)).astype(np.int64),
            "indicator_code": indicator.categorical().astype("str"),
            "source_agency": source.categorical().astype("str"),
            "indicator_source": pd.Series(
                pd.Categorical.from_codes(pair_codes, categories=pair_values)
            ).astype("str"),
            "event_month": event.categorical().astype("str"),
            "reported_month": reported.categorical().astype("str"),
            "event_month_num": _month_nums(event),
            "reported_month_num": _month_nums(reported),
            "source_start_num": nullable_int(indicator.mapped(start_per_value)),
        },
        copy=False,
    )
    return domain, combination


def value_bounds(indicator: Encoded, inputs: SuiteInputs) -> dict[str, np.ndarray]:
    """Each signal's plausibility bounds (its indicator's), one column pair per failure mode.

    NaN where the indicator is unknown or its bounds belong to the other mode.
    """
    by_code = {code: (low, high, mode) for code, low, high, mode in inputs.value_bounds}
    columns = {}
    for mode in bound_modes(inputs):
        for position, name in enumerate(BOUND_COLUMNS[mode]):
            per_value = np.array(
                [
                    bounds[position] if (bounds := by_code.get(v)) and bounds[2] == mode else np.nan
                    for v in indicator.values
                ],
                dtype=np.float64,
            )
            columns[name] = np.append(per_value, np.nan)[indicator.codes]
    return columns


def events_frames(
    table: pa.Table,
    code: str,
    residents: Residents | None,
    inputs: SuiteInputs,
) -> EventFrames:
    """The checked frames of a crisis-events file (resident ids only as surrogates)."""
    n = table.num_rows
    ids = table.column("resident_id")
    member_row, resident_ref = _resident_refs(ids, residents)
    indicator = encode(table.column("indicator_code"))
    source = encode(table.column("source_agency"))
    event = encode(table.column("event_month"))
    reported = encode(table.column("reported_month"))
    # One integer per (resident, indicator, event month): equal exactly when the keys are.
    n_ind, n_event = len(indicator.values) + 1, len(event.values) + 1
    key_known = (resident_ref >= 0) & (indicator.codes >= 0) & (event.codes >= 0)
    signal_key = np.where(
        key_known, (resident_ref * n_ind + indicator.codes) * n_event + event.codes, -1
    )
    rows = pd.DataFrame(
        {
            "sigungu": _partition(code, n),
            "row": _row(n),
            "resident_ref": nullable_int(resident_ref),
            "member_row": nullable_int(member_row),
            "signal_key": nullable_int(signal_key),
            "value": _numbers(table.column("value")),
            **value_bounds(indicator, inputs),
        },
        copy=False,
    )
    domain, combination = _combinations([indicator, source, event, reported], code, inputs)
    return EventFrames(rows, domain, combination)


def outcomes_frame(table: pa.Table, code: str, households: pd.DataFrame) -> pd.DataFrame:
    """The checked frame of an outcomes file, joined to its partition's households."""
    n = table.num_rows
    keys = table.column("household_key")
    household_row = _lookup(keys, strings_of(households["household_key"]))
    # A null for every unknown household (all of them when the households file has no rows).
    emd_of_household = np.append(households["emd_code"].astype("str").to_numpy(), None)
    household_emd = pd.Series(emd_of_household[household_row], dtype="str").where(
        household_row >= 0
    )
    emd = encode(table.column("emd_code"))
    round_month = encode(table.column("round_month"))
    resolved = encode(table.column("resolved_month"))
    outcome = encode(table.column("outcome_code"))
    resolved_given = Encoded(
        np.where(resolved.codes >= 0, 1, 0).astype(np.int32), pd.Index(["open", "resolved"])
    )
    resolution_codes, resolution_values = _pair_labels(
        outcome, resolved_given, lambda c, r: outcome_resolution_label(c, r == "resolved")
    )
    return pd.DataFrame(
        {
            "sigungu": _partition(code, n),
            "row": _row(n),
            "household_key": keys.to_pandas(),
            "household_row": nullable_int(household_row),
            "emd_code": emd.categorical(),
            "emd_code_text": pd.Series(emd.categorical()).astype("str").where(emd.codes >= 0),
            "household_emd": household_emd,
            "round_month": round_month.categorical(),
            "resolved_month": resolved.categorical(),
            "round_month_num": _month_nums(round_month),
            "resolved_month_num": _month_nums(resolved),
            "outcome_code": outcome.categorical(),
            "outcome_resolution": pd.Categorical.from_codes(
                resolution_codes, categories=pd.Index(resolution_values, dtype="str")
            ),
            "selection_reason": encode(table.column("selection_reason")).categorical(),
            "selection_probability": _numbers(table.column("selection_probability")),
            "service_code": encode(table.column("service_code")).categorical(),
        },
        copy=False,
    )


def strings_of(series: pd.Series) -> pa.Array:
    """A pandas string column as an Arrow string array (no copy for Arrow-backed strings)."""
    return pa.array(series, type=pa.string(), from_pandas=True)


def plain_frame(table: pa.Table) -> pd.DataFrame:
    """A small table as it is, with a row number."""
    frame = table.to_pandas()
    frame.insert(0, "row", _row(table.num_rows))
    return frame


def schema_frame(schema: pa.Schema) -> pd.DataFrame:
    """An empty frame with the file's columns and the pandas types they read as.

    Dictionary-encoded columns count as their value type (a categorical string is a string);
    the file's pandas metadata is ignored, so every stored column shows up, index or not.
    """
    fields = [
        f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema
    ]
    return pa.schema(fields).empty_table().to_pandas()


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack the same frame of several partitions, keeping categorical columns categorical."""
    if len(frames) == 1:
        return frames[0]
    out = {}
    for column in frames[0].columns:
        parts = [f[column] for f in frames]
        if isinstance(parts[0].dtype, pd.CategoricalDtype):
            out[column] = pd.Series(
                union_categoricals([p.array for p in parts], sort_categories=True)
            )
        else:
            out[column] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(out, copy=False)


def volume_counts(domain: pd.DataFrame, inputs: SuiteInputs) -> pd.DataFrame:
    """Signals per indicator and reported month (known indicators, months inside the window)."""
    valid = domain["indicator_code"].isin(inputs.indicator_codes) & domain["reported_month"].isin(
        inputs.window_months
    )
    return (
        domain.loc[valid]
        .groupby(["indicator_code", "reported_month"], sort=True)["rows"]
        .sum()
        .rename("signals")
        .reset_index()
    )


def hash_values(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of string values (to compare keys across partitions without the keys)."""
    return fixedwidth.hash_strings(values)
