"""The ``report`` stage: the administrators' review report of a scored round, as static HTML.

Writes ``<output_root>/rounds/YYYY-MM/report/`` (built aside and swapped in whole, so a reader
never sees half a report; an earlier report of the round is replaced, since it is derived):

- ``index.html``: the overview, aggregates only ("<5" rule, see ``pipeline.report.pages``);
- ``emd/<읍면동 코드>.html``: one page per 읍면동 with its listed households, to be handed to that
  office alone (sortable and filterable by an inline script);
- ``followup.html``: once the round's visit outcomes are imported (``pipeline.outcomes.store``),
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
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue, load_indicators, load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.errors import DataError, UsageError
from pipeline.io import sha256_file, sha256_tree, staging_dir, write_json
from pipeline.months import format_month
from pipeline.report import aggregates as agg
from pipeline.report import charts, pages
from pipeline.report.aggregates import FAIRNESS_COLUMNS, KEY

log = logging.getLogger(__name__)

REPORT = "report"
MANIFEST = "manifest.json"
SCORES = "scores.parquet"
RECORD = "report.json"
INDEX = "index.html"
FOLLOWUP = "followup.html"
EMD_DIR = "emd"


@dataclass(frozen=True)
class PreviousRound:
    """What the overview compares with: the previous round's scores and, for PSI, features."""

    round: str
    manifest: dict[str, Any]
    manifest_sha256: str
    scores: pd.DataFrame
    features: pd.DataFrame | None  # household_key + leading features; None: folder missing


@dataclass(frozen=True)
class ReportInputs:
    """Everything the pages are rendered from (read by :func:`read_inputs`)."""

    round: str
    manifest: dict[str, Any]
    manifest_sha256: str
    scores: pd.DataFrame
    capacity: pd.DataFrame
    names: dict[str, str]
    features: pd.DataFrame  # household_key, fairness columns, leading features
    leading: list[str]
    leading_source: str
    descriptions: dict[str, str]
    previous_round: str
    previous: PreviousRound | None
    outcomes: pd.DataFrame | None
    outcomes_sha256: str | None
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


def render_report(
    inputs: ReportInputs,
    config: Config,
    catalogue: IndicatorCatalogue,
    outcome_catalogue: OutcomeCatalogue,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Every page of the report as text, keyed by its path inside ``report/``; and a summary."""
    from markupsafe import Markup

    rc = config.report
    t = rc.small_count
    env = environment()
    scores = inputs.scores
    manifest = inputs.manifest
    common = {
        "round": inputs.round,
        "model_text": _model_text(manifest),
        "manifest_sha256": inputs.manifest_sha256,
        "threshold": t,
    }
    districts = agg.district_table(scores, inputs.capacity)
    sigungu = agg.sigungu_table(districts)
    tiers = agg.tier_table(scores)
    histogram = agg.score_histogram(scores, rc.score_bins)
    reasons = agg.reason_table(scores)
    listed_total = len(agg.listed_rows(scores))
    emd_rows = pages.district_rows(districts, inputs.names, t)
    for row in emd_rows:
        row["page"] = f"{EMD_DIR}/{row['emd_code']}.html"
    counts = manifest.get("counts", {})
    totals = {
        "scored": pages.count(len(scores), t),
        "listed": pages.count(listed_total, t),
        "visit": pages.count(int(districts["visit"].sum()), t),
        "phone": pages.count(int(districts["phone"].sum()), t),
        "capacity": pages.number(int(districts["capacity"].sum())),
        "ineligible": pages.count(counts.get("ineligible"), t),
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
        change = agg.listed_change(scores, prev.scores)
        previous_context = {
            "round": prev.round,
            "model_text": _model_text(prev.manifest),
            "change_rows": pages.change_rows(change, inputs.names, t),
            "psi_rows": [],
            "shifted": 0,
            "chart_psi": "",
            "psi_missing": "",
        }
        summary["previous"] = prev.round
        if prev.features is None or not inputs.leading:
            previous_context["psi_missing"] = (
                f"이전 회차({prev.round})의 입력 자료가 없어 변수 분포 변화(PSI)를 계산하지 "
                "못했습니다."
                if prev.features is None
                else "모형의 주요 변수를 찾지 못해 변수 분포 변화(PSI)를 계산하지 못했습니다."
            )
        else:
            current = _eligible(inputs.features, scores)
            previous = _eligible(prev.features, prev.scores)
            table = agg.psi_table(
                current,
                previous,
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
            previous_context.update(
                psi_rows=rows,
                shifted=len(shifted),
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
    fairness = agg.fairness_table(scores, inputs.features)
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
        leading_source=inputs.leading_source,
        fairness_rows=pages.fairness_rows(fairness, bounds, t),
        bounds=bounds,
        followup_page=followup_page,
        model_as_of=model.get("training_as_of") or "–",
        model_chosen_by=model.get("chosen_by") or "–",
        features_folder=manifest.get("features", {}).get("folder", "–"),
    )
    selection = pages.selection_names(outcome_catalogue)
    k = max(1, len(agg.reason_columns(scores)))
    emd_template = env.get_template("emd.html")
    listed = agg.listed_rows(scores)
    by_emd = {str(code): rows for code, rows in listed.groupby("emd_code", sort=True)}
    for r in districts.itertuples(index=False):
        code = str(r.emd_code)
        rows = by_emd.get(code, listed.iloc[0:0])
        files[f"{EMD_DIR}/{code}.html"] = emd_template.render(
            **common,
            emd_code=code,
            emd_name=pages.region_name(inputs.names, code) or code,
            sigungu_name=pages.region_name(inputs.names, r.sigungu_code),
            capacity=pages.number(r.capacity),
            visit=pages.number(r.visit),
            phone=pages.number(r.phone),
            rows=pages.household_rows(rows, selection, k),
            reasons=k,
        )
    if inputs.outcomes is not None:
        follow = agg.followup_tables(
            scores, inputs.outcomes, outcome_catalogue.label_of(), bins=rc.calibration_bins
        )
        summary_rows = pages.followup_summary_rows(follow, t)
        visit = follow.summary.set_index("part").loc[["visit_model", "visit_exploration"]]
        headline = _visit_headline(follow, t)
        calibration = pages.calibration_rows(follow, t)
        files[FOLLOWUP] = env.get_template("followup.html").render(
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
            bins=rc.calibration_bins,
        )
        summary["followup"] = {
            "visit_labelled": int(visit["labelled"].sum()),
            "visit_positives": int(visit["positives"].sum()),
            "ece": None if pd.isna(follow.ece) else round(float(follow.ece), 6),
        }
    return files, summary


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


def _eligible(features: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The feature rows of a round's scored (eligible) households."""
    keys = set(scores[KEY].astype(str))
    return features[features[KEY].astype(str).isin(keys).to_numpy()]


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
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__})") from None


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
    from models.data import capacity_file

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


def read_features(folder: Path, columns: list[str]) -> pd.DataFrame | None:
    """The given columns of every partition of a feature folder (None when it has none)."""
    layout = TableLayout(folder)
    codes = layout.partitions("features")
    if not codes:
        return None
    parts = [_read_parquet(layout.partition_file("features", c), columns) for c in codes]
    return pd.concat(parts, ignore_index=True)


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
    from models.tracking import tracking_uri

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


def read_inputs(config: Config, as_of: int) -> ReportInputs:
    """Read the round's datasets (and the previous round's, and outcomes when they exist)."""
    from pipeline.outcomes.store import read_round_outcomes, round_outcomes_file

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
    scores = _read_parquet(folder / SCORES)
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
        leading = agg.leading_from_reasons(scores, model_inputs, rc.leading_features)
        source = (
            "모형 학습 기록을 읽을 수 없어, 이번 회차 목록의 선정 사유에 가장 자주 나온 "
            f"요인의 대표 변수 {len(leading)}개"
        )
        source_code = "reason_frequency"
    wanted = list(dict.fromkeys([KEY, *FAIRNESS_COLUMNS, *leading]))
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"{current_folder}: feature columns missing: {', '.join(missing)}")
    features = read_features(current_folder, wanted)
    if features is None:
        raise DataError(f"{current_folder}: the round's feature partitions are missing")

    previous_label = format_month(as_of - config.window.round_interval_months)
    previous_dir = layout.round(previous_label)
    previous = None
    if (previous_dir / MANIFEST).is_file() and (previous_dir / SCORES).is_file():
        prev_manifest = _read_json(previous_dir / MANIFEST)
        prev_folder = features_folder(config, prev_manifest, previous_label)
        prev_available = set(feature_columns(prev_folder))
        prev_features = None
        if prev_available and all(c in prev_available for c in [KEY, *leading]):
            prev_features = read_features(prev_folder, [KEY, *leading])
        previous = PreviousRound(
            round=previous_label,
            manifest=prev_manifest,
            manifest_sha256=sha256_file(previous_dir / MANIFEST),
            scores=_read_parquet(previous_dir / SCORES),
            features=prev_features,
        )

    outcomes = read_round_outcomes(config, label)
    outcomes_sha = None
    if outcomes is not None:
        outcomes_sha = sha256_file(round_outcomes_file(config, label))
        if "round" in outcomes.columns:
            outcomes = outcomes[outcomes["round"].astype("string") == label]
    facts = {
        "leading_features": {"source": source_code, "run_id": run_id, "features": leading},
    }
    return ReportInputs(
        round=label,
        manifest=manifest,
        manifest_sha256=sha256_file(manifest_path),
        scores=scores,
        capacity=capacity,
        names=names,
        features=features,
        leading=leading,
        leading_source=source,
        descriptions=feature_descriptions(current_folder),
        previous_round=previous_label,
        previous=previous,
        outcomes=outcomes,
        outcomes_sha256=outcomes_sha,
        facts=facts,
    )


# --- writing ---------------------------------------------------------------------------------


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
