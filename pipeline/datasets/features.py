"""The feature rounds dataset: ``<output_root>/features/as_of=YYYY-MM/``, written by the
features stage (``features/`` and ``labels/`` partitions per 시군구, a data dictionary and a
manifest), read here by every stage that needs it. Readers only read: nothing is built on demand.

Freshness by digest: a folder's manifest records the sha256 of what it was built from (the
staged tables' manifest, the feature spec file, the indicator catalogue, the imported outcomes).
:func:`round_status` says why a folder no longer matches its inputs; stages declare such rounds
as prerequisites (``pipeline.stages.feature_rounds_needed``), and :class:`FeatureRounds` refuses
to read them, naming ``outreach features --as-of YYYY-MM``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.catalogue import OutcomeCatalogue
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.objections import registry_status, staged_objections_file
from pipeline.datasets.outcomes import imported_outcome_digests
from pipeline.datasets.staged import STAGED_MANIFEST, staged_manifest_file, staged_view_digest
from pipeline.errors import DataError
from pipeline.io import read_json_file, read_wide_parquet, sha256_file, sha256_of_json
from pipeline.months import format_month
from pipeline.vocabulary import EMD, KEY, category_levels, coerce_with_levels, eligible_mask

MANIFEST = "manifest.json"
FEATURES_TABLE = "features"
LABELS_TABLE = "labels"
DATA_DICTIONARY_CSV = "data_dictionary.csv"
DATA_DICTIONARY_JSON = "data_dictionary.json"

# Why a feature round must be built (again) before it is read (:func:`round_status`).
MISSING = "missing"
OUTCOMES_CHANGED = "imported outcomes changed since it was built"
STAGED_CHANGED = "staged tables changed since it was built"
# What the folder read of the staged tables (:func:`pipeline.datasets.staged.staged_view_digest`):
# when both the folder and the staged manifest have it, it is compared instead of every staged
# file, so that an ingest that only adds later months leaves the earlier rounds current.
STAGED_VIEW = "staged_view_sha256"
INPUT_CHANGES = {  # manifest key -> why the folder is out of date when the digest differs
    # The staged tables by their content (the sha256 of every staged file, as ingest recorded
    # them): an ingest of the same rows leaves the folders current. Folders built before this
    # key was recorded are compared by the staged manifest's own sha256 instead.
    "staged_files_sha256": STAGED_CHANGED,
    "feature_spec_file_sha256": "the feature spec changed since it was built",
    "indicator_catalogue_sha256": "the indicator catalogue changed since it was built",
    # recorded only when an objections registry is staged (pipeline/datasets/objections.py)
    "objections_sha256": "the objections registry changed since it was built",
}


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
        import pyarrow.compute as pc

        wanted = pa.array(np.asarray(keys, dtype=object), type=pa.string())
        filters = pc.field(KEY).isin(wanted)
    selected = list(columns) if columns is not None else None
    frame = read_wide_parquet(path, columns=selected, filters=filters)
    return coerce_with_levels(frame, levels)


class WantedKeys:
    """Household keys to read from many files (:meth:`in_file`), looked up in each file's key
    column through one hash table built once.

    A row filter of every wanted key builds its set again for every file it is applied to, so a
    read of some households from N files cost N sets of all the keys: at national scale (256
    partitions, a training pool's million keys) minutes per read. Here each file's filter holds
    only the wanted keys that file has.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.sorted = np.unique(np.asarray(list(keys), dtype=object))  # sorted, distinct
        self._index = pd.Index(self.sorted, dtype=object)

    def in_file(self, path: Path) -> np.ndarray:
        """The wanted keys the file holds, in the file's order (read from its key column)."""
        import pyarrow.parquet as pq

        found = pq.read_table(path, columns=[KEY]).column(0).to_numpy(zero_copy_only=False)
        found = np.asarray(found, dtype=object)
        return found[self._index.get_indexer(found) >= 0]


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

    @property
    def ineligible(self) -> tuple[str, ...]: ...

    def eligible(self, features: pd.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class FeatureRounds:
    """The feature folders under the output root, read only: a missing round, or one out of
    date (:func:`round_status`: built from other staged tables, feature spec, indicator
    catalogue or imported outcomes than the current ones), is an error that names the command
    to run (``outreach features --as-of YYYY-MM``); stages that need rounds declare them as
    prerequisites (:mod:`pipeline.stages`), so they are current before reading."""

    config: Config
    outcome_catalogue: OutcomeCatalogue

    @property
    def ineligible(self) -> tuple[str, ...]:
        """Benefit statuses that no list may hold (the config's eligibility rule)."""
        return tuple(self.config.scoring.ineligible_benefit_status)

    def eligible(self, features: pd.DataFrame) -> np.ndarray:
        return eligible_mask(features, self.ineligible)

    def folder(self, as_of: int) -> Path:
        return feature_folder(self.config, as_of)

    def _ensure(self, as_of: int) -> Path:
        """The round's folder, when it is there and current (:func:`round_status`); else a
        DataError naming the command that builds it."""
        folder = self.folder(as_of)
        why = round_status(self.config, as_of)
        if why == MISSING:
            raise DataError(
                f"{folder}: feature folder missing: run "
                f"`outreach features --as-of {format_month(as_of)}`"
            )
        if why is not None:
            raise DataError(
                f"{folder}: feature folder out of date ({why}): run "
                f"`outreach features --as-of {format_month(as_of)}`"
            )
        return folder

    def _files(self, as_of: int, table: str) -> list[Path]:
        folder = self._ensure(as_of)
        layout = TableLayout(folder)
        codes = layout.partitions(table)
        if not codes:
            raise DataError(f"{folder / table}: no partitions found")
        return [layout.partition_file(table, code) for code in codes]

    def _read(self, as_of: int, table: str) -> pd.DataFrame:
        parts = [read_wide_parquet(path) for path in self._files(as_of, table)]
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
        if keys is None:
            parts = [read_feature_file(path, levels, columns) for path in files]
        else:
            wanted = WantedKeys(keys)
            holding = [path for path in files if key_range_holds(path, wanted.sorted)]
            found = [(path, wanted.in_file(path)) for path in holding or files[:1]]
            # one file read anyway: the columns and their types
            reads = [(path, held) for path, held in found if len(held)] or found[:1]
            parts = [read_feature_file(path, levels, columns, held) for path, held in reads]
        frame = pd.concat(parts, ignore_index=True)
        del parts
        if not frame[KEY].is_monotonic_increasing:
            frame = frame.sort_values(KEY, kind="stable").reset_index(drop=True)
        # Arrow's allocator keeps the pages of the files just decoded: a training pool that reads
        # 15 rounds held gigabytes of them at 23 M households unless they are given back.
        pa.default_memory_pool().release_unused()
        return frame

    def labels(self, as_of: int) -> pd.DataFrame:
        frame = self._read(as_of, "labels")
        frame[KEY] = frame[KEY].astype("string")
        frame[EMD] = frame[EMD].astype("string")
        return frame

    def lineage(self, as_of: int) -> dict[str, object]:
        """The folder, the sha256 of its manifest, the file digests, staged manifest digest and
        feature spec digest the manifest records."""
        folder = self._ensure(as_of)
        manifest = read_folder_manifest(folder)
        return {
            "as_of": format_month(as_of),
            "folder": str(folder),
            "manifest_sha256": sha256_file(folder / MANIFEST),
            "files_sha256": manifest.get("files_sha256", {}),
            "staged_manifest_sha256": manifest.get("staged_manifest_sha256"),
            "feature_spec_sha256": manifest.get("feature_spec_sha256"),
        }


def feature_folder(config: Config, as_of: int) -> Path:
    """``<output_root>/features/as_of=YYYY-MM/``."""
    return OutputLayout(config.paths.output_root).features(format_month(as_of))


def read_folder_manifest(folder: Path) -> dict[str, Any]:
    """A feature folder's ``manifest.json``; DataError naming the file when it cannot be read."""
    return read_json_file(folder / MANIFEST)


def folder_columns(folder: Path) -> list[str]:
    """The columns of a feature folder's features (its first partition's schema, no data
    read); empty when it has no partition."""
    import pyarrow.parquet as pq

    layout = TableLayout(folder)
    codes = layout.partitions(FEATURES_TABLE)
    if not codes:
        return []
    return list(pq.read_schema(layout.partition_file(FEATURES_TABLE, codes[0])).names)


def outcomes_changed(config: Config, as_of: int, recorded: dict[str, Any]) -> bool:
    """Whether visit outcomes imported for rounds before ``as_of`` differ from those the
    folder's labels were built with (``recorded``: its manifest), i.e. ``outreach outcomes
    import`` ran since."""
    current = imported_outcome_digests(OutputLayout(config.paths.output_root).outcomes, as_of)
    return (recorded.get("imported_outcomes_sha256") or {}) != current


def _file_digest(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def input_digests(
    config: Config, staged_dir: Path | None = None, as_of: int | None = None
) -> dict[str, str | None]:
    """The digests a feature folder records of its inputs, as they are now (manifest key ->
    sha256; None for a file that does not exist): the staged tables' manifest written by
    ingest (of ``staged_dir``, default the output root's) and the sha256 of the staged files it
    lists, with ``as_of`` what a round as of that month reads of them (:data:`STAGED_VIEW`, when
    ingest recorded the signals' digests by month), the feature spec file and the indicator
    catalogue. The features stage writes them; :func:`round_status` compares them."""
    staged = staged_manifest_file(config) if staged_dir is None else staged_dir / STAGED_MANIFEST
    manifest = json.loads(staged.read_text(encoding="utf-8")) if staged.is_file() else {}
    files = manifest.get("files_sha256")
    digests = {
        "staged_manifest_sha256": _file_digest(staged),
        "staged_files_sha256": sha256_of_json(files) if files is not None else None,
    }
    view = None if as_of is None else staged_view_digest(manifest, as_of)
    if view is not None:  # no key from an older ingest: those folders are as before
        digests[STAGED_VIEW] = view
    digests |= {
        "feature_spec_file_sha256": _file_digest(Path(config.paths.features)),
        "indicator_catalogue_sha256": _file_digest(Path(config.paths.indicators)),
    }
    objections = _file_digest(staged_objections_file(staged.parent))
    if objections is not None:  # no key without a registry: those folders are as before
        digests["objections_sha256"] = objections
    return digests


def changed_inputs(recorded: dict[str, Any], current: dict[str, str | None]) -> list[str]:
    """Why a folder whose manifest is ``recorded`` is out of date against the ``current``
    digests of its inputs (:func:`input_digests`), in the order of :data:`INPUT_CHANGES`;
    pure. A digest the manifest does not record is not compared (folders written by hand, as
    in tests)."""
    by_view = recorded.get(STAGED_VIEW) is not None and current.get(STAGED_VIEW) is not None
    changes = [
        why
        for key, why in INPUT_CHANGES.items()
        if key in recorded
        and recorded[key] != current.get(key)
        and not (by_view and key == "staged_files_sha256")
    ]
    if by_view and recorded[STAGED_VIEW] != current[STAGED_VIEW]:
        changes.insert(0, STAGED_CHANGED)
    older = "staged_files_sha256" not in recorded and "staged_manifest_sha256" in recorded
    if older and recorded["staged_manifest_sha256"] != current.get("staged_manifest_sha256"):
        changes.insert(0, STAGED_CHANGED)
    # built by ingest and features without a registry, which is staged now: say so
    registry = "objections_sha256"
    if registry in current and registry not in recorded and "staged_files_sha256" in recorded:
        changes.append(INPUT_CHANGES["objections_sha256"])
    return changes


def round_status(config: Config, as_of: int) -> str | None:
    """Why the feature round ``as_of`` must be built before it is read, or None when it is
    there and current: ``missing``; its staged tables, feature spec or indicator catalogue are
    not those it was built from (by digest); the imported outcomes changed since it was built."""
    folder = feature_folder(config, as_of)
    if not (folder / MANIFEST).is_file():
        return MISSING
    manifest = read_folder_manifest(folder)
    reasons = changed_inputs(manifest, input_digests(config, as_of=as_of))
    if outcomes_changed(config, as_of, manifest):
        reasons.append(OUTCOMES_CHANGED)
    registry = registry_status(config)
    if registry is not None:
        reasons.append(registry)
    return "; ".join(reasons) or None


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

    @property
    def ineligible(self) -> tuple[str, ...]:
        return self.source.ineligible

    def eligible(self, features: pd.DataFrame) -> np.ndarray:
        return self.source.eligible(features)
