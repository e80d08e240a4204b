"""The report stage's inputs: reading a round's datasets and counting them, partition by partition.

Owns everything :func:`read_inputs` gathers into :class:`ReportInputs` (what the pages are
rendered from): the round's manifest and ``scores.parquet`` (``pipeline.datasets.rounds``;
refused when it, the kept feature importance or the round's feature folder changed since
the round was scored: :func:`refuse_changed_round`), the previous round's
(:class:`PreviousRound`), the capacity table and the region names (staged, else raw), the
columns and Korean descriptions of the round's feature folder
(``pipeline.datasets.features``), the imported visit outcomes (``pipeline.datasets.outcomes``),
and the leading features.

Leading features (for the population stability index against the previous round) are the
model's most important inputs, read from ``feature_importance.csv`` of the training run that
produced the round's model: the copy kept in the round folder (``rounds.IMPORTANCE``), else the
MLflow artifact of the run named in the manifest (through ``pipeline.tracking.runs``, read only);
when neither is available, the feature columns of the reason units named most often on this
round's list are used instead (:func:`listed_reason_table`), and the page says which.

Memory does not grow with the households: no table of every household is read. The counting is
done per 시군구 partition by the partition engine (``pipeline.engine.map_partitions``; in this
process, a local process pool or on Dask, with the same result): :func:`count_partition` (a
picklable :class:`CountTask` each, made by :func:`count_tasks`) reads one 시군구's rows of
``scores.parquet`` and its feature partition (of this round and of the previous one) and returns
small counts (``aggregates.RoundCounts``); :func:`count_rounds` adds them up, in partition order.
The score histogram's edges are fixed before: from the Parquet statistics of the ``score`` column
(the round's lowest and highest score).

Rows of ``scores.parquet`` are read by ``rounds.read_rows``: one row group at a time, keeping the
rows asked for (one 시군구, some 읍면동, the listed tiers, some households); the score stage writes
one row group per 시군구, so the statistics let it skip the others. The follow-up page reads the
listed rows and, of the scored households, only those among the imported outcomes. Every figure
is the one of the whole tables (``tests/test_report.py`` compares them on real files).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalogue import OutcomeCatalogue, load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.features import DATA_DICTIONARY_CSV, FEATURES_TABLE, folder_columns
from pipeline.datasets.rounds import (
    IMPORTANCE,
    MANIFEST,
    SCORES,
    parquet_file,
    read_manifest,
    read_rows,
    round_changes,
    score_range,
    scored_among,
    scored_features_folder,
    scores_sigungu,
)
from pipeline.datasets.staged import read_capacity_table, region_names
from pipeline.engine import map_partitions
from pipeline.errors import DataError, UsageError
from pipeline.io import read_wide_parquet, sha256_file
from pipeline.months import format_month
from pipeline.report import aggregates as agg
from pipeline.report.aggregates import FAIRNESS_COLUMNS, KEY, LISTED_TIERS
from pipeline.report.objections import read_objection_counts
from pipeline.tracking import tracking_uri
from pipeline.tracking.names import TRAINING_IMPORTANCE
from pipeline.tracking.runs import download_run_artifact
from pipeline.vocabulary import SERVICE_COLUMNS

log = logging.getLogger(__name__)

# Columns of scores.parquet the counts need (besides the reason units reason_1, reason_2, ...).
COUNT_COLUMNS = (KEY, "sigungu_code", "emd_code", "score", "tier", "selection_reason")
# Columns of the listed households the follow-up page needs.
FOLLOWUP_COLUMNS = (KEY, "sigungu_code", "emd_code", "score", "tier", "selection_reason")


@dataclass(frozen=True)
class PreviousRound:
    """What the overview compares with: the previous round's counts (PSI: its features')."""

    round: str
    manifest: dict[str, Any]
    manifest_sha256: str
    counts: agg.RoundCounts
    features: bool  # its feature folder holds the leading features (else no PSI)


@dataclass(frozen=True)
class ReportInputs:
    """Everything the pages are rendered from (read by :func:`read_inputs`)."""

    round: str
    manifest: dict[str, Any]
    manifest_sha256: str
    scores_file: Path
    counts: agg.RoundCounts  # of the whole round (histogram and fairness counted)
    districts: pd.DataFrame  # agg.district_table_from_counts
    reasons: int  # reason columns of the scores (reason_1 … reason_k)
    names: dict[str, str]
    leading: list[str]
    leading_source: str
    descriptions: dict[str, str]
    previous_round: str
    previous: PreviousRound | None
    outcomes: pd.DataFrame | None
    outcomes_sha256: str | None
    listed: pd.DataFrame | None  # listed rows (FOLLOWUP_COLUMNS), read only with outcomes
    scored_outcomes: frozenset[str] = frozenset()  # outcome households that were scored
    # the case of every listed and added household (pipeline.cases.round_cases)
    cases: pd.DataFrame | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # extra lineage for report.json
    # the round's objection counts (pipeline.report.objections; None: no registry)
    objections: dict[str, Any] | None = None


# --- the count task (picklable, for the partition engine) ------------------------------------


@dataclass(frozen=True)
class CountTask:
    """One 시군구 of a round to count: its rows of the scores and its feature partition."""

    round: str
    sigungu: str
    scores_file: Path
    score_columns: tuple[str, ...]
    features_file: Path | None  # None: no feature partition (or no feature column wanted)
    feature_columns: tuple[str, ...]
    leading: tuple[str, ...]
    edges: tuple[float, ...] | None  # the score histogram's edges (None: no histogram)
    fairness: bool


def count_partition(task: CountTask) -> agg.RoundCounts:
    """Read one 시군구's scored rows (and feature rows) and count them."""
    scores = read_rows(task.scores_file, task.score_columns, {"sigungu_code": [task.sigungu]})
    features = None
    if task.features_file is not None and task.features_file.is_file():
        features = _read_parquet(task.features_file, list(task.feature_columns))
    counts = agg.round_counts(
        scores,
        features,
        leading=task.leading,
        edges=None if task.edges is None else np.asarray(task.edges, dtype=np.float64),
        fairness=task.fairness,
        cap=agg.PARTITION_DISTINCT,
    )
    # A worker counts many partitions: hand Arrow's freed buffers back instead of keeping them.
    pa.default_memory_pool().release_unused()
    return counts


# --- reading the inputs ----------------------------------------------------------------------


def _read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return read_wide_parquet(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def feature_descriptions(folder: Path) -> dict[str, str]:
    """Korean descriptions of the feature columns (the feature folder's data dictionary)."""
    path = folder / DATA_DICTIONARY_CSV
    if not path.is_file():
        return {}
    frame = pd.read_csv(path, dtype=str)
    if not {"name", "description_ko"} <= set(frame.columns):
        return {}
    return dict(zip(frame["name"], frame["description_ko"].fillna(""), strict=True))


def training_importance(
    config: Config, run_id: str | None, round_dir: Path | None = None
) -> pd.Series | None:
    """``feature_importance.csv`` of the training run (None if absent).

    The score stage keeps a copy in the round folder (``rounds.IMPORTANCE``, covered by the
    round's manifest); only rounds without it are read through MLflow (read only: a store that
    does not exist is not created).
    """
    kept = round_dir / IMPORTANCE if round_dir is not None else None
    if kept is not None and kept.is_file():
        frame = pd.read_csv(kept)
        return pd.Series(
            frame["importance"].to_numpy(dtype=float), index=frame["feature"].astype(str)
        )
    if not run_id:
        return None
    data = download_run_artifact(run_id, TRAINING_IMPORTANCE, tracking_uri(config))
    if data is None:  # no store here, or the store or the artifact is not reachable: fall back
        return None
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # the artifact is not a CSV: fall back
        log.warning("feature importance of run %s not available: %s", run_id, exc)
        return None
    return pd.Series(frame["importance"].to_numpy(dtype=float), index=frame["feature"].astype(str))


def count_tasks(
    label: str,
    scores_file: Path,
    folder: Path,
    *,
    score_columns: list[str],
    feature_columns: list[str],
    leading: list[str],
    edges: np.ndarray | None,
    fairness: bool,
) -> list[CountTask]:
    """One :class:`CountTask` per 시군구 of a round (its feature partitions and its scores)."""
    layout = TableLayout(folder)
    with_features = set(layout.partitions(FEATURES_TABLE))
    codes = sorted(with_features | set(scores_sigungu(scores_file)))
    return [
        CountTask(
            round=label,
            sigungu=code,
            scores_file=scores_file,
            score_columns=tuple(score_columns),
            features_file=layout.partition_file(FEATURES_TABLE, code)
            if code in with_features and feature_columns
            else None,
            feature_columns=tuple(feature_columns),
            leading=tuple(leading),
            edges=None if edges is None else tuple(float(e) for e in edges),
            fairness=fairness,
        )
        for code in codes
    ]


def count_rounds(config: Config, tasks: list[CountTask]) -> dict[str, agg.RoundCounts]:
    """Run the count tasks (largest partitions first) and add up each round's counts, in
    partition order whatever order the workers finish in."""

    def size(task: CountTask) -> int:
        path = task.features_file
        return path.stat().st_size if path is not None and path.is_file() else 0

    order = sorted(range(len(tasks)), key=lambda i: (-size(tasks[i]), i))
    results = map_partitions(
        count_partition,
        [tasks[i] for i in order],
        runtime=config.runtime,
        description=f"report {tasks[0].round}: count" if tasks else "report: count",
    )
    by_task: list[Any] = [None] * len(tasks)
    for position, i in enumerate(order):
        by_task[i] = results[position]
    rounds = list(dict.fromkeys(t.round for t in tasks))
    return {
        label: agg.combine_counts(
            [r for t, r in zip(tasks, by_task, strict=True) if t.round == label],
            cap=agg.ROUND_DISTINCT,
        )
        for label in rounds
    }


def listed_reason_table(scores_file: Path) -> pd.DataFrame:
    """The round's reason table, from its listed rows only (a filter on ``tier``)."""
    columns = agg.reason_columns(pq.read_schema(scores_file).names)
    return agg.reason_table(read_rows(scores_file, [KEY, "tier", *columns], {"tier": LISTED_TIERS}))


def refuse_changed_round(
    config: Config, folder: Path, manifest: dict[str, Any], label: str
) -> None:
    """A DataError naming ``outreach score --as-of YYYY-MM --force`` when the files the report
    reads (``scores.parquet``, the kept feature importance) or the round's feature folder no
    longer match what the round's manifest recorded when it was scored."""
    changes = round_changes(config, folder, manifest, files=(SCORES, IMPORTANCE))
    if changes:
        raise DataError(
            f"round {label} changed since it was scored: {'; '.join(changes)}: run "
            f"`outreach score --as-of {label} --force`"
        )


def read_inputs(
    config: Config, as_of: int, outcome_catalogue: OutcomeCatalogue | None = None
) -> ReportInputs:
    """Read the round's datasets (and the previous round's, outcomes and call results when
    they exist) and count them partition by partition."""
    from pipeline.datasets.cases import read_round_cases
    from pipeline.datasets.outcomes import read_round_outcomes, round_outcomes_file

    outcome_catalogue = outcome_catalogue or load_outcomes(config.paths.outcomes)

    label = format_month(as_of)
    layout = OutputLayout(config.paths.output_root)
    folder = layout.round(label)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise UsageError(
            f"{folder}: round {label} has not been scored: run `outreach score --as-of {label}` "
            "first"
        )
    manifest = read_manifest(folder)
    refuse_changed_round(config, folder, manifest, label)
    scores_file = folder / SCORES
    reason_units = agg.reason_columns(parquet_file(scores_file).schema_arrow.names)
    capacity = read_capacity_table(config)
    names = region_names(config)
    rc = config.report

    current_folder = scored_features_folder(config, manifest, label)
    available = folder_columns(current_folder)
    if not available:
        raise DataError(f"{current_folder}: the round's feature partitions are missing")
    run_id = manifest.get("model", {}).get("training_run_id")
    importance = training_importance(config, run_id, folder)
    model_inputs = [c for c in available if c not in (KEY, "emd_code") and "audit__" not in c]
    if importance is not None:
        leading = agg.leading_from_importance(importance, model_inputs, rc.leading_features)
        source = (
            f"모형 학습 기록(MLflow 실행 {run_id})의 변수 중요도(feature_importance.csv) "
            f"상위 {len(leading)}개"
        )
        source_code = "training_feature_importance"
    else:
        leading = agg.leading_from_reason_table(
            listed_reason_table(scores_file), model_inputs, rc.leading_features
        )
        source = (
            "모형 학습 기록을 읽을 수 없어, 이번 회차 목록의 선정 사유에 가장 자주 나온 "
            f"요인의 대표 변수 {len(leading)}개"
        )
        source_code = "reason_frequency"
    wanted = list(dict.fromkeys([KEY, *FAIRNESS_COLUMNS, *leading]))
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"{current_folder}: feature columns missing: {', '.join(missing)}")

    extent = score_range(scores_file)
    tasks = count_tasks(
        label,
        scores_file,
        current_folder,
        score_columns=[
            *COUNT_COLUMNS,
            *reason_units,
            *(c for c in SERVICE_COLUMNS if c in pq.read_schema(scores_file).names),
        ],
        feature_columns=wanted,
        leading=leading,
        edges=None if extent is None else agg.score_edges(*extent, rc.score_bins),
        fairness=True,
    )

    previous_label = format_month(as_of - config.window.round_interval_months)
    previous_dir = layout.round(previous_label)
    has_previous = (previous_dir / MANIFEST).is_file() and (previous_dir / SCORES).is_file()
    prev_manifest: dict[str, Any] = {}
    prev_features = False
    if has_previous:
        prev_manifest = read_manifest(previous_dir)
        prev_folder = scored_features_folder(config, prev_manifest, previous_label)
        prev_available = set(folder_columns(prev_folder))
        prev_features = bool(prev_available) and all(c in prev_available for c in [KEY, *leading])
        tasks += count_tasks(
            previous_label,
            previous_dir / SCORES,
            prev_folder,
            score_columns=[KEY, "sigungu_code", "emd_code", "tier", "selection_reason"],
            feature_columns=[KEY, *leading] if prev_features else [],
            leading=leading if prev_features else [],
            edges=None,
            fairness=False,
        )
    counted = count_rounds(config, tasks)
    counts = counted[label]
    previous = None
    if has_previous:
        previous = PreviousRound(
            round=previous_label,
            manifest=prev_manifest,
            manifest_sha256=sha256_file(previous_dir / MANIFEST),
            counts=counted.get(previous_label, agg.combine_counts([])),
            features=prev_features,
        )

    outcomes = read_round_outcomes(config, label)
    outcomes_sha = None
    listed = None
    scored_outcomes: frozenset[str] = frozenset()
    if outcomes is not None:
        outcomes_sha = sha256_file(round_outcomes_file(config, label))
        if "round" in outcomes.columns:
            outcomes = outcomes[outcomes["round"].astype("string") == label]
        listed = read_rows(scores_file, FOLLOWUP_COLUMNS, {"tier": LISTED_TIERS})
        scored_outcomes = scored_among(scores_file, outcomes[KEY].dropna().astype(str).unique())
    cases, answers = read_round_cases(config, label, outcome_catalogue)
    facts = {
        "leading_features": {"source": source_code, "run_id": run_id, "features": leading},
        "cases": {"households": len(cases), "answers_sha256": answers},
    }
    objections = read_objection_counts(current_folder)
    if objections is not None:
        facts["objections"] = objections
    return ReportInputs(
        round=label,
        manifest=manifest,
        manifest_sha256=sha256_file(manifest_path),
        scores_file=scores_file,
        counts=counts,
        districts=agg.district_table_from_counts(counts.districts, capacity),
        reasons=max(1, len(reason_units)),
        names=names,
        leading=leading,
        leading_source=source,
        descriptions=feature_descriptions(current_folder),
        previous_round=previous_label,
        previous=previous,
        outcomes=outcomes,
        outcomes_sha256=outcomes_sha,
        listed=listed,
        scored_outcomes=scored_outcomes,
        facts=facts,
        cases=cases,
        objections=objections,
    )
