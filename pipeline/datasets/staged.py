"""Read one staged partition into the builder's input shape. The only place that knows the
staged layout (written by ``outreach ingest``).

Past visit outcomes are the staged ``outreach_outcomes`` partition plus, when given, the visit
outcomes imported from returned lists (``outreach outcomes import``; files
``outputs/outcomes/round=YYYY-MM/outcomes.parquet``) of the same 시군구. Each row carries its
``source`` (``staged`` or ``imported``). When both hold the same (household, round), the staged
row is kept: it is the administrative system's record, validated with the raw tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.build import FeatureInputs
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.outcomes import feature_outcomes
from pipeline.errors import DataError
from pipeline.io import sha256_of_json
from pipeline.months import format_month, to_month_index

STAGED = "staged"
IMPORTED = "imported"
OUTCOME_COLUMNS = [
    "household_key",
    "emd_code",
    "round_month",
    "selection_reason",
    "selection_probability",
    "outcome_code",
    "resolved_month",
    "service_code",  # the service a linked visit recorded (NA: none, or not recorded)
]


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


def combine_outcomes(staged: pd.DataFrame, imported: list[pd.DataFrame]) -> pd.DataFrame:
    """Staged and imported outcomes in one frame with a ``source`` column; one row per
    (household, round), the staged one when both exist; pure."""
    # a frame without the service column (from before it) has no service recorded
    staged = staged.reindex(columns=OUTCOME_COLUMNS).assign(
        source=pd.array([STAGED] * len(staged), "string")
    )
    extra = [frame.reindex(columns=OUTCOME_COLUMNS) for frame in imported if len(frame)]
    staged = staged.assign(service_code=staged["service_code"].astype("string"))
    if not extra:
        return staged
    frame = pd.concat(
        [staged, *(e.assign(source=pd.array([IMPORTED] * len(e), "string")) for e in extra)],
        ignore_index=True,
    )
    frame = frame.drop_duplicates(["household_key", "round_month"], keep="first")
    return frame.assign(
        household_key=frame["household_key"].astype("string"),
        emd_code=frame["emd_code"].astype("string"),
        round_month=frame["round_month"].to_numpy(dtype=np.int64),
        resolved_month=frame["resolved_month"].astype("Int64"),
        source=frame["source"].astype("string"),
    ).reset_index(drop=True)


def read_feature_inputs(
    staged_dir: Path, code: str, imported_outcomes: Sequence[Path] = ()
) -> FeatureInputs:
    """The staged tables of one 시군구 partition, typed for ``build_features``.

    ``imported_outcomes``: outcomes files of imported returned lists whose rows of this 시군구
    join the staged outcomes (the caller chooses the rounds and records the files' sha256).
    """
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
    outcomes = _read(layout, "outreach_outcomes", code, OUTCOME_COLUMNS)
    outcomes = outcomes.assign(
        round_month=to_month_index(outcomes["round_month"]).to_numpy(dtype=np.int64),
        resolved_month=to_month_index(outcomes["resolved_month"]),
    )
    outcomes = combine_outcomes(outcomes, [feature_outcomes(p, code) for p in imported_outcomes])
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


def capacity_file(config: Config) -> Path:
    """The staged capacity table when ingest wrote one, else the raw one."""
    staged = OutputLayout(config.paths.output_root).staged / "district_capacity.parquet"
    if staged.is_file():
        return staged
    return TableLayout(config.paths.raw_input).small_table_file("district_capacity")


def read_capacity_table(config: Config) -> pd.DataFrame:
    """The capacity table: emd_code, sigungu_code, capacity_per_round (DataError naming the
    file when it is missing or unreadable)."""
    path = capacity_file(config)
    if not path.is_file():
        raise DataError(f"{path}: district capacity table not found")
    try:
        return pd.read_parquet(path, columns=["emd_code", "sigungu_code", "capacity_per_round"])
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def load_capacity(config: Config) -> pd.Series:
    """Capacity per round of every 읍면동 (index emd_code)."""
    frame = read_capacity_table(config)
    series = frame.set_index(frame["emd_code"].astype("string"))["capacity_per_round"]
    return series.astype("int64").rename("capacity")


STAGED_MANIFEST = "_manifest.json"  # what went in and what came out of ingest

EVENTS_TABLE = "crisis_events"
# The staged manifest's digests of each partition's crisis signals by reported month (written by
# ingest): a feature round as of M reads only the signals reported before M, so it is current as
# long as those months' rows, the other staged files and its other inputs are unchanged, however
# many later months an ingest added (:func:`staged_view_digest`).
EVENT_MONTHS_KEY = "crisis_events_month_sha256"
DICTIONARIES = "dictionaries"  # the digest of the values the rows' dictionary indices point to


def events_month_digests(events: pa.Table) -> dict[str, str]:
    """The sha256 of a staged crisis-signals table's rows per reported month (``YYYY-MM``; the
    rows of a month in file order, every column: dictionary indices, months, values and null
    masks), and under :data:`DICTIONARIES` that of its dictionaries; pure."""
    table = events.unify_dictionaries().combine_chunks()
    arrays: list[np.ndarray] = []  # per column: its null mask, then its values
    values: dict[str, np.ndarray] = {}
    dictionaries = hashlib.sha256()
    for name in table.column_names:
        column = table.column(name)
        chunk = column.chunk(0) if column.num_chunks else pa.array([], type=column.type)
        if pa.types.is_dictionary(chunk.type):
            words = chunk.dictionary.to_pylist()
            dictionaries.update(json.dumps([name, words], ensure_ascii=False).encode("utf-8"))
            chunk = chunk.indices
        values[name] = chunk.fill_null(0).to_numpy(zero_copy_only=False)
        arrays += [np.asarray(chunk.is_null()), values[name]]
    reported = values["reported_month"]
    order = np.argsort(reported, kind="stable")
    months, starts = np.unique(reported[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    digests = {DICTIONARIES: dictionaries.hexdigest()}
    for i, month in enumerate(months.tolist()):
        rows = order[bounds[i] : bounds[i + 1]]
        digest = hashlib.sha256()
        for values in arrays:
            digest.update(np.ascontiguousarray(values[rows]).tobytes())
        digests[format_month(int(month))] = digest.hexdigest()
    return digests


def staged_view_digest(manifest: Mapping[str, Any], as_of: int) -> str | None:
    """The digest of what a feature round as of ``as_of`` reads of the staged tables described
    by ``manifest`` (ingest's): every staged file but the crisis signals by its sha256, and the
    signals of the months reported before ``as_of`` by their per-month digests; pure. None for
    a manifest without the per-month digests (written before they were recorded)."""
    months = manifest.get(EVENT_MONTHS_KEY)
    files = manifest.get("files_sha256")
    if months is None or files is None:
        return None
    cut = format_month(as_of)
    return sha256_of_json(
        {
            "files": {k: v for k, v in files.items() if not k.startswith(f"{EVENTS_TABLE}/")},
            EVENTS_TABLE: {
                code: {m: d for m, d in digests.items() if m == DICTIONARIES or m < cut}
                for code, digests in months.items()
            },
        }
    )


def staged_manifest_file(config: Config) -> Path:
    """``<output_root>/staged/_manifest.json`` (written by ``outreach ingest``)."""
    return OutputLayout(config.paths.output_root).staged / STAGED_MANIFEST


def read_staged_manifest(config: Config) -> dict:
    """The staged manifest, or an empty mapping when ingest has not run."""
    path = staged_manifest_file(config)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def regions_file(config: Config) -> Path:
    """The staged regions table when ingest wrote one, else the raw one."""
    staged = TableLayout(OutputLayout(config.paths.output_root).staged).small_table_file("regions")
    if staged.is_file():
        return staged
    return TableLayout(config.paths.raw_input).small_table_file("regions")


def region_names(config: Config, level: str | None = None) -> dict[str, str]:
    """Names of the region codes (of one ``level``: ``sido``, ``sigungu`` or ``emd``; all when
    None), from the staged regions table, else the raw one; empty when neither exists."""
    path = regions_file(config)
    if not path.is_file():
        return {}
    try:
        regions = pd.read_parquet(path, columns=["region_code", "level", "name"])
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__})") from None
    if level is not None:
        regions = regions[regions["level"].astype("string") == level]
    return dict(zip(regions["region_code"].astype(str), regions["name"].astype(str), strict=True))
