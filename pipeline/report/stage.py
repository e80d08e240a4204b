"""The ``report`` stage: the administrators' review report of a scored round, as static HTML.

Writes ``<output_root>/rounds/YYYY-MM/report/`` (built aside and swapped in whole, so a reader
never sees half a report; an earlier report of the round is replaced, since it is derived):

- ``index.html``: the overview, aggregates only ("<5" rule, see ``pipeline.report.pages``);
- ``emd/<읍면동 코드>.html``: one page per 읍면동 with its listed households, to be handed to that
  office alone (sortable and filterable by an inline script);
- ``followup.html``: once the round's visit outcomes are imported (``pipeline.datasets.outcomes``),
  the realised precision and calibration of the round's list;
- ``report.json``: the sha256 of the round manifest the report was built from, of the other
  inputs (previous round's manifest, outcomes file), the leading features and the sha256 of every
  file written.

Every page opens offline: styles and script are inline, charts are inline SVG, and a Content
Security Policy forbids any request for another resource. The round's manifest is not changed.
The hidden truth is never read: the follow-up page uses imported outcomes only.

Leading features (for the population stability index against the previous round) are the
model's most important inputs, read from ``feature_importance.csv`` of the training run that
produced the round's model (MLflow artifact, named in the manifest); when the MLflow store or the
artifact is not available, the feature columns of the reason units named most often on this
round's list are used instead, and the page says which.

Memory does not grow with the households: no table of every household is read. The work is
done per 시군구 partition by the partition engine (``pipeline.engine.map_partitions``; in this
process, a local process pool or on Dask, with the same result):

1. :func:`count_partition` reads one 시군구's rows of ``scores.parquet`` and its feature partition
   (of this round and of the previous one) and returns small counts (``aggregates.RoundCounts``);
   the driver adds them up, in partition order. The score histogram's edges are fixed before:
   from the Parquet statistics of the ``score`` column (the round's lowest and highest score).
2. :func:`write_emd_pages` writes the 읍면동 pages of one 시군구 from the listed rows of its
   읍면동 only.

Rows of ``scores.parquet`` are read by :func:`read_rows`: one row group at a time, keeping the
rows asked for (one 시군구, some 읍면동, the listed tiers, some households); the score stage writes
one row group per 시군구, so the statistics let it skip the others. The follow-up page reads the
listed rows and, of the scored households, only those among the imported outcomes. Every figure
is the one of the whole tables (``tests/test_report.py`` compares them on real files).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue, load_indicators, load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.rounds import (
    parquet_file,
    read_rows,
    score_range,
    scored_among,
    scores_sigungu,
)
from pipeline.engine import map_partitions
from pipeline.errors import DataError, UsageError
from pipeline.io import sha256_file, sha256_tree, staging_dir, write_json
from pipeline.months import format_month
from pipeline.report import aggregates as agg
from pipeline.report import charts, pages
from pipeline.report.aggregates import FAIRNESS_COLUMNS, KEY, LISTED_TIERS

log = logging.getLogger(__name__)

REPORT = "report"
MANIFEST = "manifest.json"
SCORES = "scores.parquet"
RECORD = "report.json"
INDEX = "index.html"
FOLLOWUP = "followup.html"
EMD_DIR = "emd"
# Columns of scores.parquet the counts need (besides the reason units reason_1, reason_2, ...).
COUNT_COLUMNS = (KEY, "sigungu_code", "emd_code", "score", "tier", "selection_reason")
# Columns of the listed households the 읍면동 pages and the follow-up page need.
PAGE_COLUMNS = (
    KEY,
    "emd_code",
    "list_rank",
    "tier",
    "score",
    "model_rank",
    "selection_reason",
    "selection_probability",
)
FOLLOWUP_COLUMNS = (KEY, "sigungu_code", "score", "tier", "selection_reason")


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
    facts: dict[str, Any] = field(default_factory=dict)  # extra lineage for report.json


@dataclass(frozen=True)
class ReportResult:
    """What ``outreach report`` did."""

    round: str
    folder: Path
    files: dict[str, str]
    previous: str | None
    followup: bool
    shifted: list[str]
    seconds: float


# --- rendering (no file access) --------------------------------------------------------------


def environment() -> Any:
    """The Jinja2 environment of the package templates (HTML autoescaped, strict)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = pages.number
    return env


def _model_text(manifest: dict[str, Any]) -> str:
    model = manifest.get("model", {})
    return f"{model.get('name', '?')} v{model.get('version', '?')}"


def common_context(inputs: ReportInputs, threshold: int) -> dict[str, Any]:
    """What every page shows in its header and footer."""
    return {
        "round": inputs.round,
        "model_text": _model_text(inputs.manifest),
        "manifest_sha256": inputs.manifest_sha256,
        "threshold": threshold,
    }


def _histogram(counts: agg.RoundCounts) -> pd.DataFrame:
    if counts.histogram is None:
        return pd.DataFrame(columns=agg.HISTOGRAM_COLUMNS)
    return counts.histogram


def render_report(
    inputs: ReportInputs,
    config: Config,
    catalogue: IndicatorCatalogue,
    outcome_catalogue: OutcomeCatalogue,
) -> tuple[dict[str, str], dict[str, Any]]:
    """The overview and the follow-up page as text, keyed by their path inside ``report/``; and
    a summary. The 읍면동 pages are written apart (:func:`write_emd_pages`)."""
    from markupsafe import Markup

    rc = config.report
    t = rc.small_count
    env = environment()
    counts = inputs.counts
    manifest = inputs.manifest
    common = common_context(inputs, t)
    districts = inputs.districts
    sigungu = agg.sigungu_table(districts)
    tiers = counts.tiers
    histogram = _histogram(counts)
    reasons = agg.reason_table_from_counts(counts.reasons)
    listed_total = counts.listed
    emd_rows = pages.district_rows(districts, inputs.names, t)
    for row in emd_rows:
        row["page"] = f"{EMD_DIR}/{row['emd_code']}.html"
    manifest_counts = manifest.get("counts", {})
    totals = {
        "scored": pages.count(counts.scored, t),
        "listed": pages.count(listed_total, t),
        "visit": pages.count(int(districts["visit"].sum()), t),
        "phone": pages.count(int(districts["phone"].sum()), t),
        "capacity": pages.number(int(districts["capacity"].sum())),
        "ineligible": pages.count(manifest_counts.get("ineligible"), t),
    }
    top_reasons = reasons.head(12)
    chart_reasons = charts.hbars(
        [pages.unit_name(str(u), catalogue) for u in top_reasons["unit"]],
        [float(v) for v in top_reasons["any"]],
        title="사유에 포함된 목록 가구 수 (상위 12개)",
        threshold=t,
        pattern_id="hatch-reasons",
    )
    summary: dict[str, Any] = {"shifted": [], "previous": None}
    previous_context = None
    if inputs.previous is not None:
        prev = inputs.previous
        change = agg.listed_change_from_counts(counts.districts, prev.counts.districts)
        previous_context = {
            "round": prev.round,
            "model_text": _model_text(prev.manifest),
            "change_rows": pages.change_rows(change, inputs.names, t),
            "psi_rows": [],
            "shifted": 0,
            "chart_psi": "",
            "psi_missing": "",
            "psi_merged": False,
        }
        summary["previous"] = prev.round
        if not prev.features or not inputs.leading:
            previous_context["psi_missing"] = (
                f"이전 회차({prev.round})의 입력 자료가 없어 변수 분포 변화(PSI)를 계산하지 "
                "못했습니다."
                if not prev.features
                else "모형의 주요 변수를 찾지 못해 변수 분포 변화(PSI)를 계산하지 못했습니다."
            )
        else:
            table = agg.psi_table_from_counts(
                counts.values,
                prev.counts.values,
                inputs.leading,
                bins=rc.psi_bins,
                threshold=rc.psi_threshold,
            )
            rows = pages.psi_rows(table, inputs.descriptions)
            shifted = [str(f) for f in table.loc[table["shifted"], "feature"]]
            summary["shifted"] = shifted
            summary["psi"] = {
                str(r.feature): round(float(r.psi), 6) for r in table.itertuples(index=False)
            }
            merged = [str(f) for f in table.loc[table["merged"], "feature"]]
            if merged:
                summary["psi_merged"] = merged
            previous_context.update(
                psi_rows=rows,
                shifted=len(shifted),
                psi_merged=bool(merged),
                chart_psi=Markup(
                    charts.hbars(
                        [str(f) for f in table["feature"]],
                        [float(v) for v in table["psi"]],
                        title="주요 변수의 PSI (점선: 기준)",
                        marker=rc.psi_threshold,
                        marker_label=f"기준 {rc.psi_threshold}",
                        highlight=[bool(s) for s in table["shifted"]],
                        value_format="decimal",
                        pattern_id="hatch-psi",
                    )
                ),
            )
    fairness = agg.fairness_table_from_counts(counts.fairness)
    bounds = config.training.fairness.ratio_bounds
    followup_page = FOLLOWUP if inputs.outcomes is not None else None
    model = manifest.get("model", {})
    files: dict[str, str] = {}
    files[INDEX] = env.get_template("index.html").render(
        **common,
        created_at=str(manifest.get("created_at", ""))[:10],
        sigungu_count=pages.number(len(sigungu)),
        emd_count=pages.number(len(districts)),
        totals=totals,
        sigungu_rows=pages.sigungu_rows(sigungu, inputs.names, t),
        district_rows=emd_rows,
        tier_rows=pages.tier_rows(tiers, t),
        exploration_share=pages.percent(config.scoring.exploration_share, 0),
        chart_eligible=Markup(
            charts.histogram(
                list(histogram["low"]),
                list(histogram["high"]),
                [int(v) for v in histogram["eligible"]],
                title="평가 대상 가구 전체",
                threshold=t,
                color=charts.BAR_LIGHT,
                pattern_id="hatch-eligible",
            )
        ),
        chart_listed=Markup(
            charts.histogram(
                list(histogram["low"]),
                list(histogram["high"]),
                [int(v) for v in histogram["listed"]],
                title="목록 가구 (방문 + 전화 확인)",
                threshold=t,
                pattern_id="hatch-listed",
            )
        ),
        chart_reasons=Markup(chart_reasons),
        reason_rows=pages.reason_rows(reasons, catalogue, listed_total, t),
        previous=previous_context,
        previous_round=inputs.previous_round,
        psi_threshold=rc.psi_threshold,
        psi_bins=rc.psi_bins,
        psi_distinct=pages.number(agg.PARTITION_DISTINCT),
        psi_round_distinct=pages.number(agg.ROUND_DISTINCT),
        leading_source=inputs.leading_source,
        fairness_rows=pages.fairness_rows(fairness, bounds, t),
        bounds=bounds,
        followup_page=followup_page,
        model_as_of=model.get("training_as_of") or "–",
        model_chosen_by=model.get("chosen_by") or "–",
        features_folder=manifest.get("features", {}).get("folder", "–"),
    )
    if inputs.outcomes is not None:
        files[FOLLOWUP], summary["followup"] = render_followup(
            inputs, env, common, outcome_catalogue, rc.calibration_bins, t
        )
    return files, summary


def render_followup(
    inputs: ReportInputs,
    env: Any,
    common: dict[str, Any],
    outcome_catalogue: OutcomeCatalogue,
    bins: int,
    t: int,
) -> tuple[str, dict[str, Any]]:
    """The follow-up page (realised precision and calibration) and its summary."""
    from markupsafe import Markup

    assert inputs.outcomes is not None and inputs.listed is not None
    follow = agg.followup_tables(
        inputs.listed,
        inputs.outcomes,
        outcome_catalogue.label_of(),
        bins=bins,
        scored=inputs.scored_outcomes,
    )
    summary_rows = pages.followup_summary_rows(follow, t)
    visit = follow.summary.set_index("part").loc[["visit_model", "visit_exploration"]]
    headline = _visit_headline(follow, t)
    calibration = pages.calibration_rows(follow, t)
    text = env.get_template("followup.html").render(
        **common,
        outcomes_sha256=inputs.outcomes_sha256 or "",
        headline=headline,
        ece=pages.decimal(follow.ece, 3),
        summary_rows=summary_rows,
        outcome_rows=pages.followup_outcome_rows(
            follow,
            pages.outcome_names(outcome_catalogue),
            outcome_catalogue.label_of(),
            t,
        ),
        sigungu_rows=pages.followup_sigungu_rows(follow, inputs.names, t),
        calibration_rows=calibration,
        chart_calibration=Markup(
            charts.reliability(
                [float(r.mean_score) for r in follow.calibration.itertuples(index=False)],
                [row["realised_value"] for row in calibration],
                [int(r.n) for r in follow.calibration.itertuples(index=False)],
                title="예측 위험도 대 실제 지원 연계율",
            )
        ),
        added={k: pages.count(v, t) for k, v in follow.added.items()},
        unmatched=pages.count(follow.unmatched, t) if follow.unmatched else "",
        bins=bins,
    )
    summary = {
        "visit_labelled": int(visit["labelled"].sum()),
        "visit_positives": int(visit["positives"].sum()),
        "ece": None if pd.isna(follow.ece) else round(float(follow.ece), 6),
    }
    return text, summary


def _visit_headline(follow: agg.FollowUp, threshold: int) -> dict[str, str]:
    """Precision of the visit tier (model and exploration together), masked like the tables."""
    parts = follow.summary.set_index("part").loc[["visit_model", "visit_exploration"]]
    labelled = int(parts["labelled"].sum())
    positives = int(parts["positives"].sum())
    mean = (
        float((parts["mean_score"].fillna(0) * parts["labelled"]).sum() / labelled)
        if labelled
        else float("nan")
    )
    precision = positives / labelled if labelled else float("nan")
    return {
        "labelled": pages.count(labelled, threshold),
        "precision": pages.masked_percent(precision, labelled, positives, threshold=threshold),
        "mean_score": pages.masked_percent(mean, labelled, threshold=threshold),
    }


@dataclass(frozen=True)
class EmdPage:
    """One 읍면동 page: the district row it shows in its header."""

    emd_code: str
    sigungu_code: str
    capacity: int
    visit: int
    phone: int


def render_emd_page(
    template: Any,
    common: dict[str, Any],
    page: EmdPage,
    rows: pd.DataFrame,
    names: dict[str, str],
    selection: dict[str, str],
    reasons: int,
) -> str:
    """The page of one 읍면동 with its listed households (``rows``: theirs only)."""
    return template.render(
        **common,
        emd_code=page.emd_code,
        emd_name=pages.region_name(names, page.emd_code) or page.emd_code,
        sigungu_name=pages.region_name(names, page.sigungu_code),
        capacity=pages.number(page.capacity),
        visit=pages.number(page.visit),
        phone=pages.number(page.phone),
        rows=pages.household_rows(rows, selection, reasons),
        reasons=reasons,
    )


def emd_pages(districts: pd.DataFrame) -> list[list[EmdPage]]:
    """The 읍면동 pages to write, grouped by 시군구 (one task each), from the district table.

    A 읍면동 code is written once (its last row, should the table hold it twice).
    """
    rows = districts.drop_duplicates("emd_code", keep="last")
    groups: dict[str, list[EmdPage]] = {}
    for r in rows.itertuples(index=False):
        groups.setdefault(str(r.sigungu_code), []).append(
            EmdPage(
                str(r.emd_code), str(r.sigungu_code), int(r.capacity), int(r.visit), int(r.phone)
            )
        )
    return [groups[k] for k in sorted(groups)]


# --- the partition tasks (picklable, for the partition engine) -------------------------------


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


@dataclass(frozen=True)
class PagesTask:
    """The 읍면동 pages of one 시군구, to be written into ``folder``."""

    scores_file: Path
    folder: Path
    pages: tuple[EmdPage, ...]
    common: dict[str, Any]
    names: dict[str, str]  # names of these 읍면동 and of their 시군구
    selection: dict[str, str]
    reasons: int


def write_emd_pages(task: PagesTask) -> list[str]:
    """Read the listed households of the task's 읍면동 and write one page each; returns the
    file names written."""
    codes = [p.emd_code for p in task.pages]
    texts = [f"reason_{i}_text" for i in range(1, task.reasons + 1)]
    present = set(pq.read_schema(task.scores_file).names)
    listed = read_rows(
        task.scores_file,
        [c for c in (*PAGE_COLUMNS, *texts) if c in present],
        {"emd_code": codes, "tier": LISTED_TIERS},
    )
    by_emd = {str(code): rows for code, rows in listed.groupby("emd_code", sort=True)}
    template = environment().get_template("emd.html")
    written = []
    for page in task.pages:
        rows = by_emd.get(page.emd_code, listed.iloc[0:0])
        text = render_emd_page(
            template, task.common, page, rows, task.names, task.selection, task.reasons
        )
        name = f"{page.emd_code}.html"
        (task.folder / name).write_text(text, encoding="utf-8")
        written.append(name)
    pa.default_memory_pool().release_unused()
    return written


# --- reading the inputs ----------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__})") from None


def _read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def region_names(config: Config) -> dict[str, str]:
    """Names of every 시도, 시군구 and 읍면동 code (staged regions, else raw)."""
    path = TableLayout(OutputLayout(config.paths.output_root).staged).small_table_file("regions")
    if not path.is_file():
        path = TableLayout(config.paths.raw_input).small_table_file("regions")
    if not path.is_file():
        return {}
    regions = _read_parquet(path, ["region_code", "name"])
    return dict(zip(regions["region_code"].astype(str), regions["name"].astype(str), strict=True))


def read_capacity(config: Config) -> pd.DataFrame:
    from pipeline.datasets.staged import capacity_file

    path = capacity_file(config)
    return _read_parquet(path, ["emd_code", "sigungu_code", "capacity_per_round"])


def features_folder(config: Config, manifest: dict[str, Any], label: str) -> Path:
    """The feature folder a round was scored from (named in its manifest)."""
    folder = manifest.get("features", {}).get("folder")
    root = config.paths.output_root
    if folder:
        path = Path(folder)
        return path if path.is_absolute() else root / path
    return OutputLayout(root).features(label)


def feature_columns(folder: Path) -> list[str]:
    """The columns of a feature folder (from its first partition's schema)."""
    layout = TableLayout(folder)
    codes = layout.partitions("features")
    if not codes:
        return []
    return list(pq.read_schema(layout.partition_file("features", codes[0])).names)


def feature_descriptions(folder: Path) -> dict[str, str]:
    """Korean descriptions of the feature columns (the feature folder's data dictionary)."""
    path = folder / "data_dictionary.csv"
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

    The score stage keeps a copy in the round folder (``model/feature_importance.csv``, covered
    by the round's manifest); only rounds without it are read through MLflow.
    """
    kept = round_dir / "model" / "feature_importance.csv" if round_dir is not None else None
    if kept is not None and kept.is_file():
        frame = pd.read_csv(kept)
        return pd.Series(
            frame["importance"].to_numpy(dtype=float), index=frame["feature"].astype(str)
        )
    if not run_id:
        return None
    from pipeline.tracking import tracking_uri

    uri = tracking_uri(config)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # no store here: do not let MLflow create an empty one
    try:
        import mlflow

        with tempfile.TemporaryDirectory(prefix="outreach-report-") as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path="feature_importance.csv",
                dst_path=tmp,
                tracking_uri=uri,
            )
            frame = pd.read_csv(path)
    except Exception as exc:  # the store or the artifact is not reachable: fall back
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
    with_features = set(layout.partitions("features"))
    codes = sorted(with_features | set(scores_sigungu(scores_file)))
    return [
        CountTask(
            round=label,
            sigungu=code,
            scores_file=scores_file,
            score_columns=tuple(score_columns),
            features_file=layout.partition_file("features", code)
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


def read_inputs(config: Config, as_of: int) -> ReportInputs:
    """Read the round's datasets (and the previous round's, and outcomes when they exist) and
    count them partition by partition."""
    from pipeline.datasets.outcomes import read_round_outcomes, round_outcomes_file

    label = format_month(as_of)
    layout = OutputLayout(config.paths.output_root)
    folder = layout.round(label)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise UsageError(
            f"{folder}: round {label} has not been scored: run `outreach score --as-of {label}` "
            "first"
        )
    manifest = _read_json(manifest_path)
    scores_file = folder / SCORES
    reason_units = agg.reason_columns(parquet_file(scores_file).schema_arrow.names)
    capacity = read_capacity(config)
    names = region_names(config)
    rc = config.report

    current_folder = features_folder(config, manifest, label)
    available = feature_columns(current_folder)
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
        score_columns=[*COUNT_COLUMNS, *reason_units],
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
        prev_manifest = _read_json(previous_dir / MANIFEST)
        prev_folder = features_folder(config, prev_manifest, previous_label)
        prev_available = set(feature_columns(prev_folder))
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
    facts = {
        "leading_features": {"source": source_code, "run_id": run_id, "features": leading},
    }
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
    )


# --- writing ---------------------------------------------------------------------------------


def pages_tasks(
    inputs: ReportInputs, config: Config, outcome_catalogue: OutcomeCatalogue, folder: Path
) -> list[PagesTask]:
    """One :class:`PagesTask` per 시군구 of the district table."""
    common = common_context(inputs, config.report.small_count)
    selection = pages.selection_names(outcome_catalogue)
    tasks = []
    for group in emd_pages(inputs.districts):
        codes = {p.emd_code for p in group} | {p.sigungu_code for p in group}
        tasks.append(
            PagesTask(
                scores_file=inputs.scores_file,
                folder=folder,
                pages=tuple(group),
                common=common,
                names={c: inputs.names[c] for c in sorted(codes) if c in inputs.names},
                selection=selection,
                reasons=inputs.reasons,
            )
        )
    return tasks


def write_report(config: Config, as_of: int) -> ReportResult:
    """``outreach report``: render the round's report and swap it into ``report/``."""
    started = time.perf_counter()
    catalogue = load_indicators(config.paths.indicators)
    outcome_catalogue = load_outcomes(config.paths.outcomes)
    inputs = read_inputs(config, as_of)
    pages_text, summary = render_report(inputs, config, catalogue, outcome_catalogue)
    final = OutputLayout(config.paths.output_root).round(inputs.round) / REPORT
    replaced = final.exists()
    with staging_dir(final) as out:
        for relative, text in sorted(pages_text.items()):
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (out / EMD_DIR).mkdir(parents=True, exist_ok=True)
        map_partitions(
            write_emd_pages,
            pages_tasks(inputs, config, outcome_catalogue, out / EMD_DIR),
            runtime=config.runtime,
            description=f"report {inputs.round}: 읍면동 pages",
        )
        files = sha256_tree(out)
        record = {
            "round": inputs.round,
            "round_manifest_sha256": inputs.manifest_sha256,
            "previous_round": None
            if inputs.previous is None
            else {
                "round": inputs.previous.round,
                "manifest_sha256": inputs.previous.manifest_sha256,
            },
            "outcomes": None
            if inputs.outcomes_sha256 is None
            else {
                "sha256": inputs.outcomes_sha256,
                "rows": 0 if inputs.outcomes is None else len(inputs.outcomes),
            },
            **inputs.facts,
            "psi": summary.get("psi"),
            "shifted_features": summary["shifted"],
            "followup": summary.get("followup"),
            "settings": config.report.model_dump(mode="json"),
            "files_sha256": files,
        }
        if summary.get("psi_merged"):
            record["psi_merged_values"] = summary["psi_merged"]
        write_json(record, out / RECORD)
    if replaced:
        log.info("replaced the earlier report of round %s", inputs.round)
    seconds = time.perf_counter() - started
    return ReportResult(
        round=inputs.round,
        folder=final,
        files=files,
        previous=inputs.previous.round if inputs.previous is not None else None,
        followup=inputs.outcomes is not None,
        shifted=list(summary["shifted"]),
        seconds=seconds,
    )
