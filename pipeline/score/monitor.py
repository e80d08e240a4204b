"""Monitoring between rounds, measured when a round is scored (docs/monitoring.md).

Three measures, recorded in the round's manifest (``monitoring``) and as metrics of the scoring
run, each against the previous round (``as_of`` minus the round interval, when it was scored):

1. **Input drift per feature group.** The PSI of every model input of the scored (eligible)
   households against the previous round's, with the report's PSI code
   (``models.stability``: value counts per 시군구 partition, added up, bins at the previous
   round's deciles); a group's PSI is the largest PSI of its features (one broken feed is not
   averaged away), its mean is recorded beside it. Groups come from the features spec
   (:func:`feature_groups`): the crisis indicators of one indicator group and that group's own
   columns (``crisis.<group>``), the distinct crisis types, the household attributes, the
   outreach history and the 읍면동 context; a column the spec does not know is grouped by its
   name's prefix (before ``__``).
2. **Score drift.** The PSI of the score distribution, the shift of the mean score and of the
   visit tier's cut score (per 읍면동 the lowest score the model placed in the visit tier; the
   round's figure is the median over 읍면동).
3. **Expected precision at capacity**, label free: the mean calibrated score of the households
   the model placed in the visit tier (not the random exploration, not carried cases), per
   읍면동 and overall, with an interval from the Poisson-binomial variance
   (``models.stability.expected_precision``). It is what the list will find **if calibration
   holds**; the report checks it against the outcomes when they return.

:func:`alarms` compares the measures with ``config.monitoring``; :func:`monitor_round` (the I/O
wrapper the score stage calls) counts the partitions with the partition engine and logs each
alarm; :func:`monitoring_metrics` flattens the section for MLflow; :func:`alarm_line` is the
one line ``outreach score`` prints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.spec import FeatureSpec, feature_columns
from models.stability import (
    ValueCounts,
    combine_value_counts,
    expected_from_sums,
    precision_sums,
    psi_from_counts,
    value_counts,
)
from pipeline.catalogue import IndicatorCatalogue
from pipeline.config import Config, MonitoringConfig
from pipeline.datasets import TableLayout
from pipeline.datasets.features import FEATURES_TABLE, folder_columns
from pipeline.datasets.rounds import (
    MANIFEST,
    MONITOR_COUNTS,
    MONITOR_VISITS,
    SCORES,
    read_manifest,
    scored_features_folder,
)
from pipeline.engine import map_partitions
from pipeline.io import sha256_file, write_parquet
from pipeline.months import format_month
from pipeline.vocabulary import KEY, MODEL_SCORE, VISIT

log = logging.getLogger(__name__)

DOCS = "docs/monitoring.md"
# Distinct values kept per partition and per round before neighbours are merged (as the report).
PARTITION_DISTINCT = 5_000
ROUND_DISTINCT = 100_000
ASSUMPTION = (
    "expected precision = mean calibrated score of the visit tier's model choices: it holds only "
    "if the scores are calibrated for this round's households (checked when outcomes return)"
)
SCORE_COLUMNS = (KEY, "sigungu_code", "emd_code", "score", "tier", "selection_reason")


# --- feature groups --------------------------------------------------------------------------


def feature_groups(
    columns: Iterable[str], spec: FeatureSpec, catalogue: IndicatorCatalogue
) -> dict[str, list[str]]:
    """The model inputs among ``columns`` grouped as the features spec declares them (sorted
    group names, columns in the given order); audit columns and keys are left out."""
    known = {c.name: c for c in feature_columns(spec, catalogue)}
    group_of_indicator = {i.code: i.group for i in catalogue.indicators}
    groups: dict[str, list[str]] = {}
    for name in columns:
        if name in (KEY, "emd_code"):
            continue
        column = known.get(name)
        if column is None:
            if name.startswith("audit__"):
                continue
            group = name.split("__", 1)[0] if "__" in name else name
        elif column.kind == "audit":
            continue
        elif column.kind in ("indicator", "group"):
            first = column.source_indicators[0]
            group = f"crisis.{group_of_indicator.get(first, first)}"
        elif column.kind == "distinct":
            group = "distinct_types"
        else:
            group = column.kind  # household, history, context
        groups.setdefault(group, []).append(name)
    return {g: groups[g] for g in sorted(groups)}


# --- counting one partition (picklable, for the partition engine) ----------------------------


@dataclass(frozen=True)
class MonitorTask:
    """One 시군구 of one round: its scored rows and its feature partition."""

    round: str
    sigungu: str
    scores_file: Path
    features_file: Path | None
    columns: tuple[str, ...]  # feature columns to count (of the scored households)
    visit: bool  # count the visit tier's model choices per 읍면동


@dataclass(frozen=True)
class MonitorCounts:
    """What one partition (or a whole round, added up) contributes."""

    values: dict[str, ValueCounts]
    score: ValueCounts
    visit: pd.DataFrame  # visit_table: per 읍면동, the model's visit choices


VISIT_COLUMNS = ["sigungu_code", "emd_code", "n", "total", "variance", "cut"]


def visit_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per 읍면동, the households the model placed in the visit tier: ``n``, ``total`` (sum of
    scores), ``variance`` (sum p (1 - p)) and ``cut`` (the lowest score among them)."""
    chosen = (scores["tier"].astype("string") == VISIT) & (
        scores["selection_reason"].astype("string") == MODEL_SCORE
    )
    rows = []
    picked = scores[chosen.fillna(False).to_numpy(dtype=bool)]
    for (sigungu, emd), part in picked.groupby(
        [picked["sigungu_code"].astype(str), picked["emd_code"].astype(str)], sort=True
    ):
        p = part["score"].to_numpy(dtype=np.float64)
        n, total, variance = precision_sums(p)
        rows.append([sigungu, emd, n, total, variance, float(np.nanmin(p)) if n else np.nan])
    return pd.DataFrame(rows, columns=VISIT_COLUMNS)


def _among(keys: pd.Series, wanted: pd.Series) -> np.ndarray:
    """Which of ``keys`` (text) are among ``wanted``: Arrow's hash lookup (pandas' ``isin`` on
    Arrow strings makes a Python object of every wanted key)."""
    value_set = pa.array(wanted.astype("string").unique().astype(str), type=pa.string())
    found = pc.is_in(pa.array(keys.astype("string"), type=pa.string()), value_set=value_set)
    return found.to_numpy(zero_copy_only=False).astype(bool)


def partition_counts(
    scores: pd.DataFrame,
    features: pd.DataFrame | None,
    columns: Sequence[str],
    *,
    visit: bool = True,
    cap: int | None = PARTITION_DISTINCT,
) -> MonitorCounts:
    """The counts of some scored households (and of their feature rows: only the rows of
    ``features`` whose key is among the scores count). Pure."""
    values: dict[str, ValueCounts] = {}
    if features is not None and columns:
        rows = _among(features[KEY], scores[KEY])
        values = {c: value_counts(features[c], cap, where=rows) for c in columns}
    return MonitorCounts(
        values=values,
        score=value_counts(scores["score"].astype("float64"), cap),
        visit=visit_table(scores) if visit else pd.DataFrame(columns=VISIT_COLUMNS),
    )


def count_partition(task: MonitorTask) -> MonitorCounts:
    """Read one 시군구's scored rows and feature rows, and count them."""
    from pipeline.datasets.rounds import read_rows
    from pipeline.io import read_wide_parquet

    scores = read_rows(task.scores_file, SCORE_COLUMNS, {"sigungu_code": [task.sigungu]})
    features = None
    if task.features_file is not None and task.columns and task.features_file.is_file():
        features = read_wide_parquet(task.features_file, columns=[KEY, *task.columns])
    return partition_counts(scores, features, task.columns, visit=task.visit)


def combine(parts: Sequence[MonitorCounts], cap: int | None = ROUND_DISTINCT) -> MonitorCounts:
    """The counts of several partitions of one round added up."""
    columns = list(dict.fromkeys(c for p in parts for c in p.values))
    visits = [p.visit for p in parts if len(p.visit)]
    return MonitorCounts(
        values={
            c: combine_value_counts([p.values[c] for p in parts if c in p.values], cap)
            for c in columns
        },
        score=combine_value_counts([p.score for p in parts], cap),
        visit=pd.concat(visits, ignore_index=True)
        if visits
        else pd.DataFrame(columns=VISIT_COLUMNS),
    )


# --- the measures (pure) ---------------------------------------------------------------------


def _r(value: float, digits: int = 6) -> float | None:
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def group_drift(
    current: Mapping[str, ValueCounts],
    previous: Mapping[str, ValueCounts],
    groups: Mapping[str, Sequence[str]],
    bins: int,
) -> dict[str, Any]:
    """PSI per feature and per feature group (the largest of its features; mean beside it)."""
    psi: dict[str, float] = {}
    for members in groups.values():
        for c in members:
            if c in current and c in previous:
                psi[c] = psi_from_counts(previous[c], current[c], bins)
    rows = []
    for group, members in groups.items():
        values = {c: psi[c] for c in members if c in psi and np.isfinite(psi[c])}
        if not values:
            continue
        worst = max(values, key=lambda c: (values[c], c))
        rows.append(
            {
                "group": group,
                "features": len(values),
                "psi": _r(values[worst]),
                "psi_mean": _r(float(np.mean(list(values.values())))),
                "worst_feature": worst,
            }
        )
    merged = sorted(c for c in psi if current[c].merged or previous[c].merged)
    return {
        "bins": bins,
        "groups": rows,
        "features": {c: _r(v) for c, v in sorted(psi.items())},
        "merged": merged,
    }


def _median_cut(visit: pd.DataFrame) -> float:
    cuts = visit["cut"].astype("float64").dropna() if len(visit) else pd.Series(dtype="float64")
    return float(cuts.median()) if len(cuts) else float("nan")


def score_drift(current: MonitorCounts, previous: MonitorCounts, bins: int) -> dict[str, Any]:
    """PSI of the score, shift of the mean score and of the visit tier's cut score."""
    cut_now, cut_before = _median_cut(current.visit), _median_cut(previous.visit)
    return {
        "psi": _r(psi_from_counts(previous.score, current.score, bins)),
        "mean_previous": _r(previous.score.mean),
        "mean_current": _r(current.score.mean),
        "mean_shift": _r(current.score.mean - previous.score.mean),
        "cut_previous": _r(cut_before),
        "cut_current": _r(cut_now),
        "cut_shift": _r(cut_now - cut_before),
        "merged": bool(current.score.merged or previous.score.merged),
    }


def precision_estimate(visit: pd.DataFrame, level: float) -> dict[str, Any]:
    """The expected precision of the visit tier's model choices, overall and per 읍면동."""
    overall = expected_from_sums(
        int(visit["n"].sum()), float(visit["total"].sum()), float(visit["variance"].sum()), level
    )
    emd = []
    for row in visit.sort_values(["sigungu_code", "emd_code"], kind="stable").itertuples():
        e = expected_from_sums(int(row.n), float(row.total), float(row.variance), level)
        emd.append(
            {
                "sigungu_code": str(row.sigungu_code),
                "emd_code": str(row.emd_code),
                **e.as_dict(),
                "cut": _r(row.cut),
            }
        )
    return {
        "households": "visit tier, chosen by the model (no exploration, no carried cases)",
        "level": level,
        "assumes": ASSUMPTION,
        "overall": overall.as_dict(),
        "cut_score": _r(_median_cut(visit)),
        "emd": emd,
    }


def alarms(section: Mapping[str, Any], bounds: MonitoringConfig) -> list[dict[str, Any]]:
    """The alarms of a monitoring section: every bound of ``bounds`` crossed (strictly: a value
    at the bound is no alarm); the feature groups of ``bounds.quiet_groups`` raise none."""
    out = []
    drift = section.get("input_drift") or {}
    for row in drift.get("groups", []):
        if row["group"] in bounds.quiet_groups:
            continue
        if row["psi"] is not None and row["psi"] > bounds.feature_group_psi:
            out.append(
                {
                    "kind": "feature_group_psi",
                    "subject": row["group"],
                    "value": row["psi"],
                    "bound": bounds.feature_group_psi,
                    "message": f"feature group {row['group']}: PSI {row['psi']:.3f} > "
                    f"{bounds.feature_group_psi} (largest: {row['worst_feature']})",
                }
            )
    score = section.get("score_drift") or {}
    if score.get("psi") is not None and score["psi"] > bounds.score_psi:
        out.append(
            {
                "kind": "score_psi",
                "subject": "score",
                "value": score["psi"],
                "bound": bounds.score_psi,
                "message": f"score distribution: PSI {score['psi']:.3f} > {bounds.score_psi}",
            }
        )
    overall = (section.get("expected_precision") or {}).get("overall") or {}
    expected = overall.get("expected")
    if expected is not None and expected < bounds.min_expected_precision:
        out.append(
            {
                "kind": "min_expected_precision",
                "subject": "visit tier",
                "value": expected,
                "bound": bounds.min_expected_precision,
                "message": f"expected precision of the visit tier {expected:.3f} < "
                f"{bounds.min_expected_precision}",
            }
        )
    return out


def monitoring_section(
    current: MonitorCounts,
    previous: MonitorCounts | None,
    groups: Mapping[str, Sequence[str]],
    bounds: MonitoringConfig,
    *,
    previous_round: str,
    previous_missing: str | None = None,
) -> dict[str, Any]:
    """The manifest's ``monitoring`` section from the counted rounds (``previous`` None: the
    previous round was not scored, or its counts are not available, ``previous_missing`` says
    why). Pure."""
    section: dict[str, Any] = {
        "docs": DOCS,
        "previous_round": previous_round if previous is not None else None,
        "previous_missing": previous_missing if previous is None else None,
        "input_drift": None,
        "score_drift": None,
        "expected_precision": precision_estimate(current.visit, bounds.interval),
        "bounds": bounds.model_dump(mode="json"),
    }
    if previous is not None:
        if previous.values:
            section["input_drift"] = group_drift(
                current.values, previous.values, groups, bounds.psi_bins
            )
        section["score_drift"] = score_drift(current, previous, bounds.psi_bins)
    section["alarms"] = alarms(section, bounds)
    return section


def monitoring_metrics(section: Mapping[str, Any]) -> dict[str, float]:
    """The section's figures as MLflow metrics (``monitoring.*``; missing figures left out)."""
    out: dict[str, float | None] = {}
    precision = section.get("expected_precision") or {}
    overall = precision.get("overall") or {}
    out["monitoring.expected_precision"] = overall.get("expected")
    out["monitoring.expected_precision_low"] = overall.get("low")
    out["monitoring.expected_precision_high"] = overall.get("high")
    out["monitoring.visit_model_households"] = overall.get("n")
    out["monitoring.cut_score"] = precision.get("cut_score")
    score = section.get("score_drift") or {}
    for key in ("psi", "mean_current", "mean_shift", "cut_shift"):
        out[f"monitoring.score_{key}"] = score.get(key)
    for row in (section.get("input_drift") or {}).get("groups", []):
        out[f"monitoring.feature_group_psi.{row['group']}"] = row["psi"]
    out["monitoring.alarms"] = len(section.get("alarms", []))
    return {k: float(v) for k, v in out.items() if v is not None}


def alarm_line(section: Mapping[str, Any] | None) -> str | None:
    """The one line ``outreach score`` prints when a bound was crossed (None: no alarm)."""
    found = list((section or {}).get("alarms") or [])
    if not found:
        return None
    what = "; ".join(a["message"] for a in found)
    return f"  warning: monitoring alarm ({len(found)}): {what} (see {DOCS})"


# --- the I/O wrapper the score stage calls ---------------------------------------------------


def _tasks(
    label: str, scores_file: Path, folder: Path, columns: Sequence[str], visit: bool
) -> list[MonitorTask]:
    from pipeline.datasets.rounds import scores_sigungu

    layout = TableLayout(folder)
    with_features = set(layout.partitions(FEATURES_TABLE))
    return [
        MonitorTask(
            round=label,
            sigungu=code,
            scores_file=scores_file,
            features_file=layout.partition_file(FEATURES_TABLE, code)
            if code in with_features
            else None,
            columns=tuple(columns),
            visit=visit,
        )
        for code in sorted(scores_sigungu(scores_file))
    ]


def monitor_columns(
    features_dir: Path, spec: FeatureSpec, catalogue: IndicatorCatalogue
) -> list[str]:
    """The feature columns a round's monitoring counts (every model input of the folder, by
    group: :func:`feature_groups`)."""
    groups = feature_groups(folder_columns(features_dir), spec, catalogue)
    return [c for cols in groups.values() for c in cols]


def combine_partitions(parts: Mapping[str, MonitorCounts]) -> MonitorCounts:
    """A round's counts from its partitions' (by 시군구 code), added up in code order, as
    :func:`monitor_round` counts them again from the files."""
    return combine([parts[code] for code in sorted(parts)])


def _stored_counts(previous_dir: Path, columns: Sequence[str]) -> MonitorCounts | None:
    """The counts a round stored when it was scored, if they are there and their sha256 is
    the one its manifest records (else None: they are counted again)."""
    recorded = read_manifest(previous_dir).get("files_sha256") or {}
    for name in (MONITOR_COUNTS, MONITOR_VISITS):
        path = previous_dir / name
        if not path.is_file():
            return None
        if recorded.get(name) != sha256_file(path):
            log.warning(
                "%s: differs from the sha256 its round's manifest records; the round's "
                "monitoring counts are counted again",
                path,
            )
            return None
    stored = read_counts(previous_dir)
    return MonitorCounts(
        values={c: stored.values[c] for c in columns if c in stored.values},
        score=stored.score,
        visit=stored.visit,
    )


def monitor_round(
    config: Config,
    as_of: int,
    round_dir: Path,
    features_dir: Path,
    spec: FeatureSpec,
    catalogue: IndicatorCatalogue,
    current: MonitorCounts,
) -> dict[str, Any]:
    """The ``monitoring`` section of the round being written in ``round_dir``, from
    ``current`` (its counts, added up over its partitions while they were scored: every
    column of :func:`monitor_columns`), against the previous round when it was scored; each
    alarm is logged as a warning. ``current`` is stored in the round (:func:`write_counts`).

    The previous round's counts are the ones it stored; a round scored before they were
    stored (or whose stored counts differ from its manifest) is counted again from its
    scores and its feature folder, with the partition engine."""
    from pipeline.datasets import OutputLayout

    label = format_month(as_of)
    previous_label = format_month(as_of - config.window.round_interval_months)
    previous_dir = OutputLayout(config.paths.output_root).round(previous_label)
    columns = list(current.values)
    write_counts(current, round_dir)
    previous = None
    missing = None
    if not ((previous_dir / MANIFEST).is_file() and (previous_dir / SCORES).is_file()):
        missing = f"round {previous_label} was not scored"
    else:
        previous = _stored_counts(previous_dir, columns)
        if previous is None:
            previous_folder = scored_features_folder(
                config, read_manifest(previous_dir), previous_label
            )
            before = set(folder_columns(previous_folder))
            tasks = _tasks(
                previous_label,
                previous_dir / SCORES,
                previous_folder,
                [c for c in columns if c in before],
                True,
            )
            previous = combine(
                map_partitions(
                    count_partition,
                    tasks,
                    runtime=config.runtime,
                    description=f"monitor {previous_label}",
                )
            )
    section = monitoring_section(
        current,
        previous,
        feature_groups(columns, spec, catalogue),
        config.monitoring,
        previous_round=previous_label,
        previous_missing=missing,
    )
    for alarm in section["alarms"]:
        log.warning("round %s: monitoring alarm: %s", label, alarm["message"])
    return section


# --- the counts a round keeps ----------------------------------------------------------------

_SCORE_ROW = "score"
_FEATURE_ROW = "feature"


def counts_table(counts: MonitorCounts) -> pa.Table:
    """Every :class:`ValueCounts` of ``counts`` as one row (the score's first), the values and
    their counts as lists. Pure; :func:`counts_from_tables` reads it back exactly."""
    items = [(_SCORE_ROW, "", counts.score)] + [
        (_FEATURE_ROW, c, v) for c, v in counts.values.items()
    ]
    return pa.table(
        {
            "kind": pa.array([k for k, _, _ in items], pa.string()),
            "column": pa.array([c for _, c, _ in items], pa.string()),
            "dtype": pa.array([v.dtype for _, _, v in items], pa.string()),
            "numeric": pa.array([v.numeric for _, _, v in items], pa.bool_()),
            "missing": pa.array([v.missing for _, _, v in items], pa.int64()),
            "total": pa.array([v.total for _, _, v in items], pa.float64()),
            "distinct": pa.array([v.distinct for _, _, v in items], pa.int64()),
            "merged": pa.array([v.merged for _, _, v in items], pa.bool_()),
            "numbers": pa.array(
                [v.values.astype(np.float64) if v.numeric else None for _, _, v in items],
                pa.list_(pa.float64()),
            ),
            "texts": pa.array(
                [None if v.numeric else [str(x) for x in v.values] for _, _, v in items],
                pa.list_(pa.string()),
            ),
            "counts": pa.array(
                [v.counts.astype(np.int64) for _, _, v in items], pa.list_(pa.int64())
            ),
        }
    )


def _lists(column: pa.ChunkedArray, numeric: bool) -> list[np.ndarray]:
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    flat = array.values.to_numpy(zero_copy_only=False)
    if not numeric:
        flat = flat.astype(object)
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(array))]


def counts_from_tables(table: pa.Table, visit: pd.DataFrame) -> MonitorCounts:
    """The :class:`MonitorCounts` of :func:`counts_table` and the visit table. Pure."""
    numbers = _lists(table["numbers"], True)
    texts = _lists(table["texts"], False)
    counts = _lists(table["counts"], True)
    meta = table.select(
        ["kind", "column", "dtype", "numeric", "missing", "total", "distinct", "merged"]
    ).to_pylist()
    score = None
    values: dict[str, ValueCounts] = {}
    for i, row in enumerate(meta):
        found = ValueCounts(
            dtype=row["dtype"],
            numeric=row["numeric"],
            values=numbers[i].astype(np.float64) if row["numeric"] else texts[i],
            counts=counts[i].astype(np.int64),
            missing=row["missing"],
            total=row["total"],
            distinct=row["distinct"],
            merged=row["merged"],
        )
        if row["kind"] == _SCORE_ROW:
            score = found
        else:
            values[row["column"]] = found
    if score is None:
        raise ValueError("monitoring counts: no score row")
    visit = visit.reindex(columns=VISIT_COLUMNS)
    return MonitorCounts(values=values, score=score, visit=visit)


def write_counts(counts: MonitorCounts, round_dir: Path) -> None:
    """Store a round's counts in the round (``monitoring/``; atomic per file)."""
    write_parquet(counts_table(counts), round_dir / MONITOR_COUNTS)
    visit = counts.visit.reindex(columns=VISIT_COLUMNS).astype(
        {"sigungu_code": "string", "emd_code": "string", "n": "int64"}
        | {c: "float64" for c in ("total", "variance", "cut")}
    )
    write_parquet(visit, round_dir / MONITOR_VISITS)


def read_counts(round_dir: Path) -> MonitorCounts:
    """The counts :func:`write_counts` stored in a round."""
    table = pq.read_table(round_dir / MONITOR_COUNTS)
    visit = pq.read_table(round_dir / MONITOR_VISITS).to_pandas()
    return counts_from_tables(table, visit)


def round_alarm_line(round_dir: Path) -> str | None:
    """:func:`alarm_line` of a scored round's manifest (None: no alarm, or no section)."""
    if not (round_dir / MANIFEST).is_file():
        return None
    return alarm_line(read_manifest(round_dir).get("monitoring"))
