"""Training data access: the one place where the train stage reads datasets.

Features and labels come from the feature folders ``outputs/features/as_of=YYYY-MM/`` written by
the features stage (built on demand when a round's folder is missing). Capacity comes from the
staged (else raw) ``district_capacity`` table. The hidden truth is read only by evaluation, and
only when it exists (synthetic data): it never reaches a training input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from features.build import AGE_BANDS, BENEFITS, NO_OUTCOME, TENURES
from pipeline.catalogue import OutcomeCatalogue
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.errors import DataError
from pipeline.io import sha256_file
from pipeline.months import format_month, parse_month_series

log = logging.getLogger(__name__)

KEY = "household_key"
EMD = "emd_code"
ID_COLUMNS = (KEY, EMD)
AUDIT_PREFIX = "audit__"
RULE_COLUMN = "distinct_types__3m"
INELIGIBLE_BENEFIT = "basic_livelihood"


def category_levels(outcome_catalogue: OutcomeCatalogue) -> dict[str, list[str]]:
    """Fixed category levels of the categorical feature columns (same codes in train and score)."""
    return {
        "hh__tenure": list(TENURES),
        "hh__benefit_status": list(BENEFITS),
        "history__last_outcome": [NO_OUTCOME, *outcome_catalogue.codes],
        "audit__head_sex": ["M", "F"],
        "audit__head_age_band": list(AGE_BANDS),
    }


def coerce_feature_types(frame: pd.DataFrame, outcome_catalogue: OutcomeCatalogue) -> pd.DataFrame:
    """Categoricals back to their fixed levels (Parquet stores them as strings); keys as strings.

    Returns a new frame (the input is not changed); untouched columns are shared, not copied.
    """
    return coerce_with_levels(frame, category_levels(outcome_catalogue))


def as_levels(values: pd.Series, levels: list[str]) -> pd.Categorical:
    """``values`` as a categorical of ``levels``: text outside them becomes missing (pandas 4
    refuses to build a categorical from unknown values)."""
    text = values.astype("string")
    return pd.Categorical(text.where(text.isin(levels)), categories=levels)


def coerce_with_levels(frame: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """:func:`coerce_feature_types` with the levels given (picklable, for partition tasks)."""
    changes: dict[str, object] = {}
    for column, values in levels.items():
        if column in frame.columns:
            changes[column] = as_levels(frame[column], values)
    for column in ID_COLUMNS:
        if column in frame.columns:
            changes[column] = frame[column].astype("string")
    return frame.assign(**changes)


def eligible_mask(features: pd.DataFrame) -> np.ndarray:
    """Households a list may contain: everyone not already receiving basic livelihood support."""
    return (features["hh__benefit_status"].astype("string") != INELIGIBLE_BENEFIT).to_numpy(
        dtype=bool
    )


def read_feature_file(
    path: Path,
    levels: dict[str, list[str]],
    columns: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One partition file of a feature table, typed (:func:`coerce_with_levels`).

    ``columns`` reads only those columns (in that order); ``keys`` reads only the rows of
    those households (a row filter evaluated while the file is read, so that a partition is never
    held whole beside the rows kept).
    """
    filters = None
    if keys is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = pa.array(np.asarray(keys, dtype=object), type=pa.string())
        filters = pc.field(KEY).isin(wanted)
    selected = list(columns) if columns is not None else None
    frame = pd.read_parquet(path, columns=selected, filters=filters)
    return coerce_with_levels(frame, levels)


def key_range_holds(path: Path, sorted_keys: np.ndarray) -> bool:
    """Whether some of ``sorted_keys`` lies within the file's household-key range.

    From the Parquet statistics alone (no data read); True when the file has no statistics.
    A row filter is evaluated on every row, so a file that cannot hold a wanted key is skipped.
    """
    import pyarrow.parquet as pq

    if len(sorted_keys) == 0:
        return False
    metadata = pq.ParquetFile(path).metadata
    column = metadata.schema.names.index(KEY) if KEY in metadata.schema.names else None
    if column is None:
        return True
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return True
        first = np.searchsorted(sorted_keys, stats.min, side="left")
        if first < len(sorted_keys) and sorted_keys[first] <= stats.max:
            return True
    return False


def file_key_range(path: Path) -> tuple[str, str] | None:
    """The smallest and largest household key of a Parquet file, from its statistics alone.

    None when some row group has no statistics (the range is then unknown); ``("", "")`` for a
    file without rows.
    """
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    if metadata.num_rows == 0:
        return ("", "")
    if KEY not in metadata.schema.names:
        return None
    column = metadata.schema.names.index(KEY)
    low = high = None
    for group in range(metadata.num_row_groups):
        if metadata.row_group(group).num_rows == 0:
            continue
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return None
        low = stats.min if low is None else min(low, stats.min)
        high = stats.max if high is None else max(high, stats.max)
    if low is None:
        return ("", "")
    return (str(low), str(high))


class RoundSource(Protocol):
    """Where features and labels as of a round come from.

    ``features`` reads the whole table only when asked to: ``columns`` and ``keys`` restrict it
    to some columns and to some households, so that training holds labelled rows, not a national
    table. ``feature_files`` are the partition files, for work done partition by partition
    (:func:`read_feature_file` reads one).
    """

    def features(
        self,
        as_of: int,
        columns: Sequence[str] | None = None,
        keys: Iterable[str] | None = None,
    ) -> pd.DataFrame: ...

    def feature_columns(self, as_of: int) -> list[str]: ...

    def feature_files(self, as_of: int) -> list[Path]: ...

    def labels(self, as_of: int) -> pd.DataFrame: ...

    def lineage(self, as_of: int) -> dict[str, object]: ...


@dataclass(frozen=True)
class FolderSource:
    """Feature folders under the output root; a missing round is built by the features stage."""

    config: Config
    outcome_catalogue: OutcomeCatalogue
    build_missing: bool = True

    def folder(self, as_of: int) -> Path:
        return OutputLayout(self.config.paths.output_root).features(format_month(as_of))

    def _ensure(self, as_of: int) -> Path:
        folder = self.folder(as_of)
        stale = _outcomes_changed(self.config, folder, as_of)
        if not (folder / "manifest.json").is_file() or stale:
            if not self.build_missing:
                raise DataError(f"{folder}: feature folder missing: run `outreach features`")
            from pipeline.features.stage import (
                build_round,  # the features stage owns how it is built
            )

            why = "imported outcomes changed since it was built" if stale else "missing"
            log.info("feature folder %s %s: building it", folder, why)
            build_round(self.config, as_of)
        return folder

    def _files(self, as_of: int, table: str) -> list[Path]:
        folder = self._ensure(as_of)
        layout = TableLayout(folder)
        codes = layout.partitions(table)
        if not codes:
            raise DataError(f"{folder / table}: no partitions found")
        return [layout.partition_file(table, code) for code in codes]

    def _read(self, as_of: int, table: str) -> pd.DataFrame:
        parts = [pd.read_parquet(path) for path in self._files(as_of, table)]
        return pd.concat(parts, ignore_index=True)

    def feature_files(self, as_of: int) -> list[Path]:
        return self._files(as_of, "features")

    def feature_columns(self, as_of: int) -> list[str]:
        import pyarrow.parquet as pq

        return list(pq.read_schema(self.feature_files(as_of)[0]).names)

    def features(
        self,
        as_of: int,
        columns: Sequence[str] | None = None,
        keys: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Features as of a round, sorted by household key; all of them unless restricted.

        ``columns`` (the key is always read) and ``keys`` (households) are applied while each
        partition file is read: the columns left out are not read, the rows left out are dropped
        as they are read, so memory holds the rows kept plus one file being read at most.
        """
        levels = category_levels(self.outcome_catalogue)
        if columns is not None:
            columns = [KEY, *(c for c in columns if c != KEY)]
        files = self.feature_files(as_of)
        if keys is not None:
            keys = np.sort(np.asarray(list(keys), dtype=object))  # once, not per partition
            holding = [path for path in files if key_range_holds(path, keys)]
            files = holding or files[:1]  # one file read anyway: the columns and their types
        parts = [read_feature_file(path, levels, columns, keys) for path in files]
        frame = pd.concat(parts, ignore_index=True)
        if not frame[KEY].is_monotonic_increasing:
            frame = frame.sort_values(KEY, kind="stable").reset_index(drop=True)
        return frame

    def labels(self, as_of: int) -> pd.DataFrame:
        frame = self._read(as_of, "labels")
        frame[KEY] = frame[KEY].astype("string")
        frame[EMD] = frame[EMD].astype("string")
        return frame

    def lineage(self, as_of: int) -> dict[str, object]:
        """The folder, the sha256 of its manifest and the file digests the manifest records."""
        folder = self._ensure(as_of)
        manifest_path = folder / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        return {
            "as_of": format_month(as_of),
            "folder": str(folder),
            "manifest_sha256": sha256_file(manifest_path),
            "files_sha256": manifest.get("files_sha256", {}),
            "staged_manifest_sha256": manifest.get("staged_manifest_sha256"),
        }


def _outcomes_changed(config: Config, folder: Path, as_of: int) -> bool:
    """Whether visit outcomes imported for rounds before ``as_of`` differ from those the
    folder's labels were built with (``outreach outcomes import`` ran since)."""
    from pipeline.datasets.outcomes import imported_outcome_digests

    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    recorded = json.loads(manifest.read_text(encoding="utf-8")).get("imported_outcomes_sha256")
    current = imported_outcome_digests(OutputLayout(config.paths.output_root).outcomes, as_of)
    return (recorded or {}) != current


@dataclass
class CachedSource:
    """Keeps the labels of some months in memory (the same labels are read once per round)."""

    source: RoundSource
    _labels: dict[int, pd.DataFrame] | None = None

    def features(
        self,
        as_of: int,
        columns: Sequence[str] | None = None,
        keys: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        return self.source.features(as_of, columns=columns, keys=keys)

    def feature_columns(self, as_of: int) -> list[str]:
        return self.source.feature_columns(as_of)

    def feature_files(self, as_of: int) -> list[Path]:
        return self.source.feature_files(as_of)

    def labels(self, as_of: int) -> pd.DataFrame:
        self._labels = self._labels or {}
        if as_of not in self._labels:
            self._labels[as_of] = self.source.labels(as_of)
        return self._labels[as_of]

    def lineage(self, as_of: int) -> dict[str, object]:
        return self.source.lineage(as_of)


def capacity_file(config: Config) -> Path:
    """The staged capacity table when ingest wrote one, else the raw one."""
    staged = OutputLayout(config.paths.output_root).staged / "district_capacity.parquet"
    if staged.is_file():
        return staged
    return TableLayout(config.paths.raw_input).small_table_file("district_capacity")


def load_capacity(config: Config) -> pd.Series:
    """Capacity per round of every 읍면동 (index emd_code)."""
    path = capacity_file(config)
    if not path.is_file():
        raise DataError(f"{path}: district capacity table not found")
    frame = pd.read_parquet(path, columns=["emd_code", "capacity_per_round"])
    series = frame.set_index(frame["emd_code"].astype("string"))["capacity_per_round"]
    return series.astype("int64").rename("capacity")


def truth_available(config: Config) -> bool:
    return bool(TableLayout(config.paths.truth_input).partitions("household_month"))


def truth_covers(config: Config, months: Iterable[int]) -> bool:
    """Whether the hidden truth has every one of ``months`` (it ends where its data window
    ended: a round scored after that, e.g. once visit outcomes came back, has no truth)."""
    import pyarrow.parquet as pq

    layout = TableLayout(config.paths.truth_input)
    codes = layout.partitions("household_month")
    if not codes:
        return False
    known = pq.read_table(layout.partition_file("household_month", codes[0]), columns=["month"])
    present = {str(m) for m in known.column("month").unique().to_pylist()}
    return all(format_month(m) in present for m in months)


def truth_files(config: Config) -> list[Path]:
    """The partition files of the hidden truth (none for real data)."""
    layout = TableLayout(config.paths.truth_input)
    return [
        layout.partition_file("household_month", code)
        for code in layout.partitions("household_month")
    ]


def read_round_truth(paths: Sequence[Path], keys: pd.Series, round_month: int) -> pd.DataFrame:
    """The truth of a round for some households (evaluation only), aligned on ``keys``.

    Reads the round's month and the month after from ``paths`` (the truth files that can hold
    these households). Columns: in_need (bool, False when the truth lacks the household) and
    hardship (the latent state at the round month, NaN when lacking).
    """
    if not paths:
        return pd.DataFrame({"in_need": np.zeros(len(keys), bool), "hardship": np.nan})
    wanted = [format_month(round_month), format_month(round_month + 1)]
    parts = [
        pd.read_parquet(
            path, columns=[KEY, "month", "hardship", "in_need"], filters=[("month", "in", wanted)]
        )
        for path in paths
    ]
    truth = pd.concat(parts, ignore_index=True)
    truth[KEY] = truth[KEY].astype("string")
    truth["month"] = parse_month_series(truth["month"]).astype("int64")
    truth["in_need"] = truth["in_need"].astype(bool)
    per = truth_for_round(truth, round_month).reindex(pd.Index(keys))
    return pd.DataFrame(
        {
            "in_need": per["in_need"].fillna(False).astype(bool).to_numpy(),
            "hardship": per["hardship"].to_numpy(dtype=np.float64),
        }
    )


def truth_for_round(truth: pd.DataFrame, round_month: int) -> pd.DataFrame:
    """Per household: in need in the round's month or the month after, and hardship at the round.

    Index household_key; columns in_need (bool), hardship (the latent state at the round month).
    """
    now = truth[truth["month"] == round_month].set_index(KEY)
    after = truth[truth["month"] == round_month + 1].set_index(KEY)["in_need"]
    need = now["in_need"] | after.reindex(now.index, fill_value=False).astype(bool)
    return pd.DataFrame({"in_need": need.astype(bool), "hardship": now["hardship"].astype(float)})


def raw_file_digests(config: Config) -> dict[str, str]:
    """sha256 of every raw input file, computed from the bytes (not copied from a record)."""
    raw = Path(config.paths.raw_input)
    return {
        p.relative_to(raw).as_posix(): sha256_file(p) for p in sorted(raw.rglob("*")) if p.is_file()
    }
