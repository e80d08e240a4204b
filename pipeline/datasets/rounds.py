"""The round dataset: ``<output_root>/rounds/YYYY-MM/``, written by ``outreach score``.

- ``scores.parquet``: every eligible household of the round (score, ranks, tier, selection,
  reasons), one row group per 시군구 partition;
- ``lists/<시군구>/emd_<읍면동>.csv|.xlsx`` and ``lists/<시군구>/sigungu_<시군구>.csv|.xlsx``;
- ``model/feature_importance.csv``: the training run's importances, kept with the round;
- ``callcentre/calls_<시군구>.csv``: the phone tier for the automated call service, one file per
  시군구 (``CALL_COLUMNS``, docs/callcentre.md);
- ``monitoring/counts.parquet`` and ``monitoring/visits.parquet``: what the round's monitoring
  counted (the value counts of every model input and of the score over the scored households,
  and the visit tier's model choices per 읍면동; ``pipeline.score.monitor``), so that the next
  round compares with them without counting this round again;
- ``manifest.json``: the lineage of the round and the sha256 of every file above;
- ``report/``: the review report (written later by ``outreach report``, outside the manifest);
- ``shadow/v<N>/``: a challenger scored beside the round (``outreach score --shadow N``, outside
  the manifest): ``scores.parquet``, ``summary.json``, ``overlap_per_emd.csv``, ``fairness.csv``.
- ``export/<시군구>/emd_<읍면동>.bundle``: each 읍면동's list and report page encrypted with that
  office's key (``outreach export``, outside the manifest; docs/export.md).
- ``explanations/<household key>.html|.pdf``: one household's explanation in plain Korean
  (``outreach explain``, outside the manifest; docs/explanations.md).

A round replaced with ``score --force`` is kept in ``rounds/_replaced/YYYY-MM-N/``. The readers
below read Parquet row group by row group, so no reader holds a national table it does not need.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.features import MANIFEST as FEATURES_MANIFEST
from pipeline.errors import DataError
from pipeline.io import read_json_file, sha256_file, short_digest
from pipeline.months import format_month
from pipeline.vocabulary import KEY

MANIFEST = "manifest.json"
SCORES = "scores.parquet"
LISTS = "lists"
# The phone tier sent to the automated first-contact call service (AI 초기상담), one CSV per
# 시군구: the interface's columns and version (docs/callcentre.md). The call service sends the
# same file back with call_result and call_date filled in.
CALLCENTRE = "callcentre"
CALL_INTERFACE_VERSION = "1"
CALL_COLUMNS = (
    "interface_version",
    "round",
    "sigungu_code",
    "emd_code",
    "household_key",
    "call_id",
    "priority",
    "call_purpose",
    "call_result",
    "call_date",
)
IMPORTANCE = "model/feature_importance.csv"
MONITOR_COUNTS = "monitoring/counts.parquet"
MONITOR_VISITS = "monitoring/visits.parquet"
REPORT = "report"
# Inside report/: the overview, the follow-up page, one page per 읍면동, the report's record.
REPORT_INDEX = "index.html"
REPORT_FOLLOWUP = "followup.html"
REPORT_EMD_DIR = "emd"
REPORT_RECORD = "report.json"
# The ministry's table of the round (CSV, UTF-8 with a BOM, Korean headers, suppressed cells "x";
# pipeline.report.ministry), written with the report whenever the round has cases.
REPORT_MINISTRY = "ministry_table.csv"
# The copy of the round's model's high-impact AI file (pipeline.report.ai_file; audit 'ai file').
REPORT_AI_FILE = "ai_file.md"
REPORT_AI_FILE_PAGE = "ai_file.html"  # the same file rendered as a page of the report
PARTS = ".parts"  # the partitions' score parts while a round is built
# Shadow scoring (`outreach score --shadow VERSION`, docs/scoring.md "Shadow mode"): a
# challenger's scores and tiers beside the round's, in shadow/v<N>/ (outside the manifest; the
# round's own files are never touched).
SHADOW = "shadow"
SHADOW_SCORES = "scores.parquet"
SHADOW_SUMMARY = "summary.json"
SHADOW_OVERLAP = "overlap_per_emd.csv"
SHADOW_FAIRNESS = "fairness.csv"
REPLACED = "_replaced"
LIST_SUFFIXES = (".csv", ".xlsx")
# The offices' encrypted bundles (`outreach export`, docs/export.md), outside the manifest.
EXPORT = "export"
BUNDLE_SUFFIX = ".bundle"
# One household's explanation (`outreach explain`, docs/explanations.md), outside the manifest.
EXPLANATIONS = "explanations"


def round_dir(config: Config, as_of: int) -> Path:
    """``<output_root>/rounds/YYYY-MM/``."""
    return OutputLayout(config.paths.output_root).round(format_month(as_of))


def replaced_dir(config: Config) -> Path:
    """Where ``score --force`` keeps the rounds it replaced."""
    return OutputLayout(config.paths.output_root).rounds / REPLACED


def round_exists(folder: Path) -> bool:
    return folder.exists() and any(folder.iterdir())


def list_paths(lists_dir: Path, sigungu: str, emd: str | None) -> tuple[Path, Path]:
    """CSV and XLSX of one 읍면동's list (``emd``), or of the whole 시군구 (``emd`` None)."""
    folder = lists_dir / sigungu
    stem = f"emd_{emd}" if emd is not None else f"sigungu_{sigungu}"
    return folder / f"{stem}.csv", folder / f"{stem}.xlsx"


def report_emd_page(emd: str) -> str:
    """The report page of one 읍면동, relative to ``report/``."""
    return f"{REPORT_EMD_DIR}/{emd}.html"


def bundle_path(folder: Path, sigungu: str, emd: str) -> Path:
    """The encrypted bundle of one 읍면동 in the round folder ``folder``."""
    return folder / EXPORT / sigungu / f"emd_{emd}{BUNDLE_SUFFIX}"


def explanation_paths(folder: Path, key: str) -> tuple[Path, Path]:
    """HTML and PDF of one household's explanation in the round folder ``folder``."""
    return folder / EXPLANATIONS / f"{key}.html", folder / EXPLANATIONS / f"{key}.pdf"


def shadow_dir(folder: Path, version: str) -> Path:
    """The shadow record of model ``version`` in the round folder ``folder``."""
    return folder / SHADOW / f"v{version}"


def call_export_file(folder: Path, sigungu: str) -> Path:
    """The call service's file of one 시군구 in the round folder ``folder``."""
    return folder / CALLCENTRE / f"calls_{sigungu}.csv"


def part_file(folder: Path, sigungu: str) -> Path:
    """A partition's part of the scores while the round is built."""
    return folder / PARTS / f"{sigungu}.parquet"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The round's ``manifest.json``; DataError naming the file when it cannot be read."""
    return read_json_file(folder / MANIFEST)


def scored_features_folder(config: Config, manifest: Mapping[str, Any], label: str) -> Path:
    """The feature folder a round was scored from (named in its manifest; relative to the
    output root), else the round's folder under the output root."""
    folder = (manifest.get("features") or {}).get("folder")
    root = Path(config.paths.output_root)
    if folder:
        path = Path(folder)
        return path if path.is_absolute() else root / path
    return OutputLayout(root).features(label)


def round_changes(
    config: Config, folder: Path, manifest: Mapping[str, Any], files: Sequence[str] = (SCORES,)
) -> list[str]:
    """What no longer matches the round's ``manifest`` since it was scored, one phrase each:
    a file of ``files`` whose sha256 differs from the manifest's ``files_sha256`` (or that is
    missing, or that it does not record), and the feature folder when its manifest's sha256
    is not the one the round records (``features.manifest_sha256``)."""
    recorded = manifest.get("files_sha256") or {}
    changes = []
    for name in files:
        path = folder / name
        want = recorded.get(name)
        have = sha256_file(path) if path.is_file() else None
        if want is None and have is None:
            continue
        if want is None:
            changes.append(f"{path}: not in the round manifest")
        elif have is None:
            changes.append(f"{path}: missing")
        elif have != want:
            changes.append(
                f"{path}: differs from the round manifest "
                f"(sha256 {short_digest(have)}, recorded {short_digest(want)})"
            )
    features = scored_features_folder(config, manifest, folder.name)
    want = (manifest.get("features") or {}).get("manifest_sha256")
    path = features / FEATURES_MANIFEST
    have = sha256_file(path) if path.is_file() else None
    if have != want:
        changes.append(
            f"{features}: feature folder changed since the round was scored "
            f"(manifest sha256 {short_digest(have)}, recorded {short_digest(want)})"
        )
    return changes


def parquet_file(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def _column_stats(file: pq.ParquetFile, column: str) -> list[Any]:
    """The statistics of one column in each row group (None where a row group has none)."""
    names = [file.metadata.schema.column(i).path for i in range(file.metadata.num_columns)]
    if column not in names:
        raise DataError(f"{file}: column {column} missing")
    index = names.index(column)
    out = []
    for i in range(file.metadata.num_row_groups):
        stats = file.metadata.row_group(i).column(index).statistics
        out.append(stats if stats is not None and stats.has_min_max else None)
    return out


def scores_sigungu(path: Path) -> list[str]:
    """The 시군구 codes of a scores file: from each row group's statistics when they name one
    code, else from the row group's ``sigungu_code`` column."""
    file = parquet_file(path)
    codes: set[str] = set()
    for i, stats in enumerate(_column_stats(file, "sigungu_code")):
        if file.metadata.row_group(i).num_rows == 0:
            continue
        if stats is not None and stats.min == stats.max and not stats.null_count:
            codes.add(str(stats.min))
            continue
        column = file.read_row_group(i, columns=["sigungu_code"]).column(0)
        codes.update(str(v) for v in pc.unique(column).to_pylist() if v is not None)
    return sorted(codes)


def score_range(path: Path) -> tuple[float, float] | None:
    """The lowest and highest score of a scores file (None when it has no scores): from the
    row groups' statistics, else from their ``score`` column."""
    file = parquet_file(path)
    lows, highs = [], []
    for i, stats in enumerate(_column_stats(file, "score")):
        if file.metadata.row_group(i).num_rows == 0:
            continue
        if stats is not None and not stats.null_count:
            lows.append(float(stats.min))
            highs.append(float(stats.max))
            continue
        found = pc.min_max(file.read_row_group(i, columns=["score"]).column(0)).as_py()
        if found["min"] is not None:
            lows.append(float(found["min"]))
            highs.append(float(found["max"]))
    return (min(lows), max(highs)) if lows else None


def _may_hold(stats: Any, values: list[str]) -> bool:
    """Whether a row group whose statistics are ``stats`` may hold one of the sorted values."""
    if stats is None:
        return True
    i = bisect.bisect_left(values, str(stats.min))
    return i < len(values) and values[i] <= str(stats.max)


def read_rows(
    path: Path, columns: Sequence[str], where: Mapping[str, Iterable[str]]
) -> pd.DataFrame:
    """The rows of a Parquet file whose text columns hold one of the given values (every
    condition of ``where``), read one row group at a time, so that memory holds one row group
    and the rows kept; row groups whose statistics rule the values out are not read."""
    file = parquet_file(path)
    names = file.schema_arrow.names
    missing = [c for c in [*columns, *where] if c not in names]
    if missing:
        raise DataError(f"{path}: columns missing: {', '.join(missing)}")
    wanted = {c: sorted({str(v) for v in values}) for c, values in where.items()}
    stats = {c: _column_stats(file, c) for c in wanted}
    sets = {c: pa.array(v, type=pa.string()) for c, v in wanted.items()}
    read = list(dict.fromkeys([*columns, *wanted]))
    parts = []
    try:
        for i in range(file.metadata.num_row_groups):
            if not file.metadata.row_group(i).num_rows or not all(
                _may_hold(stats[c][i], wanted[c]) for c in wanted
            ):
                continue
            table = file.read_row_group(i, columns=read)
            keep = None
            for c, value_set in sets.items():
                hit = pc.is_in(table[c].cast(pa.string()), value_set=value_set)
                keep = hit if keep is None else pc.and_(keep, hit)
            parts.append((table if keep is None else table.filter(keep)).select(list(columns)))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if not parts:
        return file.schema_arrow.empty_table().select(list(columns)).to_pandas()
    return pa.concat_tables(parts).to_pandas()


def scored_among(path: Path, keys: Iterable[str]) -> frozenset[str]:
    """Which of ``keys`` are households of a scores file."""
    keys = list(keys)
    if not keys:
        return frozenset()
    return frozenset(read_rows(path, [KEY], {KEY: keys})[KEY].astype(str))
