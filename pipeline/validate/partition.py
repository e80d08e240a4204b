"""Validate a batch of 시군구 partitions in one worker process.

Each partition's four raw files are read once into memory, hashed (sha256 of exactly the bytes
that were checked), parsed and turned into checked frames; then the frames of all partitions in
the batch are stacked and Great Expectations validates each table once per batch (GX costs about
20 ms per expectation and run whatever the size, so one run per partition would be dominated by
that at national scale). Every frame keeps its partition and row number, so examples and
quarantined rows still name the 시군구 and the row of the file. Direct identifiers are read only
where a join needs them (resident ids) and never leave this module.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from pipeline.datasets import PARTITION_KEY, PARTITIONED_RAW_TABLES, TableLayout
from pipeline.validate import frames
from pipeline.validate.checks import (
    EVENTS_DOMAIN_SUITE,
    QUARANTINE,
    STOP,
    Check,
    SuiteInputs,
    example_columns,
    schema_suite_name,
)
from pipeline.validate.contract import CONTRACTS
from pipeline.validate.engine import GxEngine, engine_for
from pipeline.validate.national_keys import KeySegment, key_segment
from pipeline.validate.verdict import CheckResult, file_failure, read_results
from pipeline.validate.volume import combine_counts

log = logging.getLogger(__name__)

REJECTED_COLUMNS = ("table", "sigungu", "row", "check", "reason", "detail")

# Address, phone and name are never read: only their presence and type are checked.
READ_COLUMNS: dict[str, list[str]] = {
    "households": ["household_key", "emd_code", "size", "tenure", "income_band", "benefit_status"],
    "household_members": [
        "resident_id", "household_key", "relation", "birth_year", "sex", "disability",
    ],
    "crisis_events": list(CONTRACTS["crisis_events"].columns),
    "outreach_outcomes": list(CONTRACTS["outreach_outcomes"].columns),
}  # fmt: skip
# String columns read straight from Parquet's dictionary pages (few distinct values).
DICTIONARY_COLUMNS: dict[str, list[str]] = {
    "households": ["emd_code", "tenure", "income_band", "benefit_status"],
    "household_members": ["relation", "sex"],
    "crisis_events": ["indicator_code", "source_agency", "event_month", "reported_month"],
    "outreach_outcomes": [
        "emd_code", "round_month", "resolved_month", "outcome_code", "selection_reason",
    ],
}  # fmt: skip


@dataclass(frozen=True)
class LoadedFile:
    """A raw file read into memory: its digest, bytes and schema."""

    relpath: str
    sha256: str
    data: pa.Buffer
    schema: pa.Schema


def load_file(
    root: Path, path: Path, table: str, partition: str | None
) -> LoadedFile | CheckResult:
    """Read a Parquet file's bytes and schema, or say why it cannot be used."""
    relpath = path.relative_to(root).as_posix()
    if not path.is_file():
        return file_failure(table, partition, relpath, "file missing")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return file_failure(table, partition, relpath, f"file unreadable ({exc.strerror})")
    if not raw:
        return file_failure(table, partition, relpath, "file is empty (0 bytes)")
    buffer = pa.py_buffer(raw)
    try:
        schema = pq.read_schema(pa.BufferReader(buffer))
    except (pa.ArrowException, OSError, ValueError) as exc:
        problem = str(exc).splitlines()[0][:160]
        return file_failure(table, partition, relpath, f"not a readable Parquet file ({problem})")
    return LoadedFile(relpath, hashlib.sha256(raw).hexdigest(), buffer, schema)


def read_columns(
    loaded: LoadedFile,
    table: str,
    partition: str | None,
    columns: list[str],
    dictionary: list[str] | None = None,
) -> pa.Table | CheckResult:
    """Read some columns, or say why the data pages are unreadable."""
    try:
        reader = pq.ParquetFile(pa.BufferReader(loaded.data), read_dictionary=dictionary or None)
        return reader.read(columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        problem = str(exc).splitlines()[0][:160]
        return file_failure(
            table, partition, loaded.relpath, f"data pages unreadable (corrupt Parquet: {problem})"
        )


def schema_results(
    engine: GxEngine,
    table: str,
    partition: str | None,
    schema: pa.Schema,
    example_keys: int,
) -> tuple[list[CheckResult], dict[str, Any]]:
    """Run the table's schema suite on an empty frame with the file's columns and types.

    The result depends only on the schema, so a schema already checked in this process (the
    same table in another partition, normally) reuses GX's result for it.
    """
    suite = schema_suite_name(table)
    frame = frames.schema_frame(schema)
    cache_key = (table, repr([(c, str(t)) for c, t in frame.dtypes.items()]))
    cached = engine.schema_cache.get(cache_key)
    if cached is None:
        gx_result = engine.run(suite, frame)
        results = read_results(
            gx_result,
            engine.suites[suite],
            table=table,
            partition=None,
            example_columns=(),
            example_keys=example_keys,
        )
        missing = set(CONTRACTS[table].columns) - set(schema.names)
        # A missing column is reported once, by the column-set check, not by its type check.
        results = [
            r
            for r in results
            if not (r.expectation.startswith("expect_column_values_to_be_") and r.column in missing)
        ]
        cached = (results, gx_result)
        engine.schema_cache[cache_key] = cached
    results, gx_result = cached
    return [replace(r, partition=partition) for r in results], gx_result


@dataclass
class TableCheck:
    """What checking one table's frame produced."""

    results: list[CheckResult] = field(default_factory=list)
    gx_result: dict[str, Any] | None = None
    rejected: list[pd.DataFrame] = field(default_factory=list)
    over_share: list[CheckResult] = field(default_factory=list)  # too many rows to set aside


def _check_of(engine: GxEngine, suite: str, result: CheckResult) -> Check:
    return next(c for c in engine.suites[suite] if c.key == (result.expectation, result.column))


def _detail(check: Check, entry: dict[str, Any]) -> str:
    columns = [check.kwargs.get(k) for k in ("column", "column_A", "column_B")]
    return ", ".join(f"{c}={entry[c]}" for c in columns if c is not None and c in entry)


def rejected_frame(
    table: str, check: Check, sigungu: list[str], rows: list[int], details: list[str]
) -> pd.DataFrame:
    """Rejected-rows records of one quarantine check (no identifier values: frames have none)."""
    return pd.DataFrame(
        {
            "table": table,
            "sigungu": pd.Series(sigungu, dtype="str"),
            "row": np.asarray(rows, dtype=np.int64),
            "check": f"{check.expectation_type} ({check.column})",
            "reason": check.reason,
            "detail": pd.Series(details, dtype="str"),
        },
        columns=list(REJECTED_COLUMNS),
    )


def check_frame(
    engine: GxEngine,
    suite: str,
    table: str,
    partition: str | None,
    frame: pd.DataFrame,
    *,
    max_rejected_share: float,
    example_keys: int,
) -> TableCheck:
    """Run a suite on a checked frame; list the rows its failed quarantine checks set aside.

    A quarantine check that fails on more than ``max_rejected_share`` of the frame stops the
    run anyway (some partition in it is above the share), so its rows are not listed.
    """
    out = TableCheck()
    out.gx_result = engine.run(suite, frame)
    out.results = read_results(
        out.gx_result,
        engine.suites[suite],
        table=table,
        partition=partition,
        example_columns=example_columns(suite),
        example_keys=example_keys,
        frame=frame,
    )
    rows = max(len(frame), 1)
    for result in out.results:
        if result.success or result.on_failure != QUARANTINE:
            continue
        if result.unexpected_count / rows > max_rejected_share:
            out.over_share.append(result)
            continue
        check = _check_of(engine, suite, result)
        entries = engine.unexpected_rows(suite, frame, check)
        if len(entries) != result.unexpected_count:
            raise RuntimeError(
                f"{suite}: {len(entries)} rows listed for {result.expectation} on "
                f"{result.column}, {result.unexpected_count} counted"
            )
        out.rejected.append(
            rejected_frame(
                table,
                check,
                [str(e.get("sigungu", partition or "")) for e in entries],
                [int(e["row"]) for e in entries],
                [_detail(check, e) for e in entries],
            )
        )
    return out


def check_events_domain(
    engine: GxEngine,
    domain: pd.DataFrame,
    combinations: dict[str, np.ndarray],
    *,
    max_rejected_share: float,
    example_keys: int,
    signals: int,
) -> TableCheck:
    """Run the combinations suite; failing combinations fail every signal that carries them.

    Counts and quarantined rows are signals (rows of crisis_events), not combinations.
    """
    suite = EVENTS_DOMAIN_SUITE
    out = TableCheck()
    out.gx_result = engine.run(suite, domain)
    results = read_results(
        out.gx_result,
        engine.suites[suite],
        table="crisis_events",
        partition=None,
        example_columns=example_columns(suite),
        example_keys=example_keys,
        frame=domain,
    )
    for result in results:
        if result.success:
            out.results.append(result)
            continue
        check = _check_of(engine, suite, result)
        entries = engine.unexpected_rows(suite, domain, check)
        failing = domain.set_index(["sigungu", "first_row"]).loc[
            [(str(e["sigungu"]), int(e["first_row"])) for e in entries]
        ]
        signal_count = int(failing["rows"].sum())
        result = replace(result, unexpected_count=signal_count)
        out.results.append(result)
        if result.on_failure != QUARANTINE:
            continue
        if signal_count / max(signals, 1) > max_rejected_share:
            out.over_share.append(result)
            continue
        for code, group in failing.reset_index().groupby("sigungu", observed=True, sort=True):
            combination = combinations[str(code)]
            rows = np.flatnonzero(np.isin(combination, group["combination"].to_numpy()))
            detail_of = {
                int(c): _detail(check, r)
                for c, r in zip(group["combination"], group.to_dict(orient="records"), strict=True)
            }
            out.rejected.append(
                rejected_frame(
                    "crisis_events",
                    check,
                    [str(code)] * len(rows),
                    rows.tolist(),
                    [detail_of[int(c)] for c in combination[rows]],
                )
            )
    return out


@dataclass(frozen=True)
class BatchTask:
    """Everything a worker needs to validate some partitions (picklable)."""

    codes: tuple[str, ...]
    raw_dir: Path
    inputs: SuiteInputs
    emd_sigungu: tuple[tuple[str, str], ...]
    max_rejected_share: float
    example_keys: int


@dataclass
class BatchOutcome:
    """What validating a batch of partitions produced, for the national merge.

    Whatever grows with the rows travels compactly: the keys as numpy arrays, the rows set aside
    with categorical columns (see :func:`compact_rejected`), the volume counts summed over the
    batch.
    """

    codes: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, sigungu) -> rows
    unusable: set[tuple[str, str]] = field(default_factory=set)
    results: list[CheckResult] = field(default_factory=list)
    gx_results: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    rejected: pd.DataFrame | None = None
    volume: list[pd.DataFrame] = field(default_factory=list)
    keys: list[KeySegment] = field(default_factory=list)


@dataclass
class _Frames:
    households: list[pd.DataFrame] = field(default_factory=list)
    members: list[pd.DataFrame] = field(default_factory=list)
    events: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    domain: list[pd.DataFrame] = field(default_factory=list)
    outcomes: list[pd.DataFrame] = field(default_factory=list)
    combinations: dict[str, np.ndarray] = field(default_factory=dict)


def _read_partition(
    task: BatchTask, code: str, engine: GxEngine, out: BatchOutcome
) -> dict[str, pa.Table]:
    """Load, hash and schema-check one partition's files; the usable tables' data."""
    layout = TableLayout(task.raw_dir)
    tables: dict[str, pa.Table] = {}
    for table in PARTITIONED_RAW_TABLES:
        out.unusable.add((table, code))
        loaded = load_file(task.raw_dir, layout.partition_file(table, code), table, code)
        if isinstance(loaded, CheckResult):
            out.results.append(loaded)
            continue
        out.files[loaded.relpath] = loaded.sha256
        results, gx_result = schema_results(engine, table, code, loaded.schema, task.example_keys)
        out.results.extend(results)
        if not any(r is gx_result for _, _, r in out.gx_results):  # same schema: one result
            out.gx_results.append((schema_suite_name(table), batch_label(task.codes), gx_result))
        if not all(r.success for r in results):
            continue
        data = read_columns(loaded, table, code, READ_COLUMNS[table], DICTIONARY_COLUMNS[table])
        if isinstance(data, CheckResult):
            out.results.append(data)
            continue
        tables[table] = data
        out.rows[(table, code)] = data.num_rows
        out.unusable.discard((table, code))
    return tables


def _partition_frames(
    task: BatchTask, code: str, tables: dict[str, pa.Table], acc: _Frames, out: BatchOutcome
) -> None:
    """Checked frames of one partition (tables whose parent table is unusable are skipped)."""
    emd_sigungu = dict(task.emd_sigungu)
    households = members = None
    residents = None
    if "households" in tables:
        raw_households = tables.pop("households")
        households = frames.households_frame(raw_households, code, emd_sigungu)
        acc.households.append(households)
        keys = frames.strings(raw_households.column("household_key"))
        present = np.flatnonzero(keys.is_valid().to_numpy(zero_copy_only=False))
        hashes = frames.hash_values(keys.take(pa.array(present)))
        out.keys.append(key_segment("households", code, hashes, present))
    if "household_members" in tables and households is not None:
        members, residents = frames.members_frame(tables.pop("household_members"), code, keys)
        acc.members.append(members)
        out.keys.append(
            key_segment("household_members", code, residents.hashes(), residents.first_row)
        )
    if "crisis_events" in tables and residents is not None:
        events = frames.events_frames(tables.pop("crisis_events"), code, residents, task.inputs)
        acc.events.append((code, events.rows))
        acc.domain.append(events.domain)
        acc.combinations[code] = events.combination
        out.volume.append(frames.volume_counts(events.domain, task.inputs))
    elif "crisis_events" in tables:
        out.unusable.add(("crisis_events", code))
    if "outreach_outcomes" in tables and households is not None:
        acc.outcomes.append(
            frames.outcomes_frame(tables.pop("outreach_outcomes"), code, households)
        )


def _offset(frames_: list[pd.DataFrame], column: str) -> list[pd.DataFrame]:
    """Shift a per-partition surrogate so that values of different partitions never meet."""
    out, offset = [], 0
    for frame in frames_:
        values = frame[column]
        top = values.max(skipna=True)
        if offset:
            frame = frame.assign(**{column: values + offset})
        out.append(frame)
        offset += 0 if pd.isna(top) else int(top) + 1
    return out


def batch_label(codes: tuple[str, ...]) -> str:
    """How a batch of partitions is named in results: ``sigungu=A`` or ``sigungu=A..B (n)``."""
    label = f"{PARTITION_KEY}={codes[0]}"
    return label if len(codes) == 1 else f"{label}..{codes[-1]} ({len(codes)} partitions)"


def validate_batch(task: BatchTask) -> BatchOutcome:
    """Check the four raw tables of some 시군구 partitions."""
    engine = engine_for(task.inputs)
    out = BatchOutcome(task.codes)
    acc = _Frames()
    for code in task.codes:
        tables = _read_partition(task, code, engine, out)
        _partition_frames(task, code, tables, acc, out)

    common = {"max_rejected_share": task.max_rejected_share, "example_keys": task.example_keys}
    batch = batch_label(task.codes)
    checked: list[tuple[str, str, TableCheck]] = []
    stacked = {
        "households": acc.households,
        "household_members": _offset(acc.members, "resident_ref"),
        "outreach_outcomes": acc.outcomes,
    }
    for table, parts in stacked.items():
        if parts:
            frame = frames.concat_frames(parts)
            item = check_frame(engine, table, table, None, frame, **common)
            checked.append((table, batch, item))
            del frame
    # Signals are checked one partition at a time: the uniqueness of millions of keys costs
    # pandas several times more per row in one big hash table than in a few smaller ones.
    for code, rows in acc.events:
        item = check_frame(engine, "crisis_events", "crisis_events", code, rows, **common)
        checked.append(("crisis_events", f"{PARTITION_KEY}={code}", item))
    if acc.domain:
        signals = sum(len(c) for c in acc.combinations.values())
        domain = frames.concat_frames(acc.domain)
        item = check_events_domain(engine, domain, acc.combinations, signals=signals, **common)
        checked.append((EVENTS_DOMAIN_SUITE, batch, item))
    for suite, label, item in checked:
        out.results.extend(item.results)
        if item.gx_result is not None:
            out.gx_results.append((suite, label, item.gx_result))
    rejected = [frame for _, _, item in checked for frame in item.rejected]
    out.rejected = pd.concat(rejected, ignore_index=True) if rejected else empty_rejected()
    over_share = [r for _, _, item in checked for r in item.over_share]
    out.results.extend(share_failures(out.rejected, out.rows, over_share, task.max_rejected_share))
    out.rejected = compact_rejected(out.rejected)
    out.volume = [combine_counts(out.volume)] if out.volume else []
    return out


def share_failures(
    rejected: pd.DataFrame,
    rows: dict[tuple[str, str], int],
    over_share: list[CheckResult],
    max_share: float,
) -> list[CheckResult]:
    """A stopping failure for each table partition with too many rows set aside.

    ``over_share`` are quarantine checks that failed on more than the share of a whole batch:
    some partition of the batch is above the share, and their rows were not listed.
    """
    out: list[CheckResult] = []
    for result in over_share:
        out.append(
            replace(
                result,
                expectation="rejected_share",
                on_failure=STOP,
                reason=(
                    f"too many rows to set aside ({result.reason}): above "
                    f"validation.max_rejected_share {max_share:.2%}"
                ),
            )
        )
    if not len(rejected):
        return out
    counted = rejected.groupby(["table", "sigungu"], sort=True)["row"].nunique()
    for (table, code), count in counted.items():
        total = max(rows.get((table, code), 0), 1)
        if count / total <= max_share:
            continue
        part = rejected[(rejected["table"] == table) & (rejected["sigungu"] == code)]
        reasons = part["reason"].value_counts()
        out.append(
            CheckResult(
                suite=table,
                table=table,
                partition=code,
                expectation="rejected_share",
                column="(rows)",
                success=False,
                unexpected_count=int(count),
                element_count=total,
                on_failure=STOP,
                reason=(
                    f"{count / total:.2%} of the rows would be set aside, above "
                    f"validation.max_rejected_share {max_share:.2%} "
                    f"({'; '.join(reasons.index[:3])})"
                ),
                examples=tuple(f"row {r}" for r in part["row"].head(5)),
            )
        )
    return out


# Text columns of the rejected rows: few distinct values, repeated on every row.
_REJECTED_TEXT = ("table", "sigungu", "check", "reason", "detail")


def compact_rejected(rejected: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows with categorical text columns (a few bytes a row instead of a string
    per row and column), as they travel to the driver and stay there until written."""
    return rejected.astype({c: "category" for c in _REJECTED_TEXT})


def concat_rejected(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack compact rejected rows (see :func:`compact_rejected`), still compact."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return compact_rejected(empty_rejected())
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    columns = {}
    for column in REJECTED_COLUMNS:
        if column in _REJECTED_TEXT:
            columns[column] = pd.Series(
                union_categoricals([p[column].astype("category").array for p in parts])
            )
        else:
            columns[column] = pd.concat([p[column] for p in parts], ignore_index=True)
    return pd.DataFrame(columns, copy=False)


def plain_rejected(rejected: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows with text columns as strings again (the rejected-rows file's types)."""
    text = [c for c in _REJECTED_TEXT if isinstance(rejected[c].dtype, pd.CategoricalDtype)]
    if not text:
        return rejected
    return rejected.astype({c: "str" for c in text})


def empty_rejected() -> pd.DataFrame:
    """A rejected-rows frame with no rows."""
    return pd.DataFrame(
        {
            "table": pd.Series([], dtype="str"),
            "sigungu": pd.Series([], dtype="str"),
            "row": pd.Series([], dtype="int64"),
            "check": pd.Series([], dtype="str"),
            "reason": pd.Series([], dtype="str"),
            "detail": pd.Series([], dtype="str"),
        }
    )
